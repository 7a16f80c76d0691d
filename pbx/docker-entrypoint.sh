#!/usr/bin/env bash
# The Asterisk container of docker-compose.yml: renders pbx/asterisk/ into /etc/asterisk as
# scripts/pbx does for a sandbox instance (same placeholders), from the environment, then runs
# Asterisk in the foreground. One image serves every PBX of the compose file: each container
# has its own ports, systemname (its id) and trunks.
#
#   CTI_PBX_SYSTEMNAME (required)   CTI_PBX_HTTP_PORT [8088]  CTI_PBX_SIP_PORT [5060]
#   CTI_PBX_RTP_START [10000]  CTI_PBX_RTP_END [10999]   CTI_PBX_TRUNKS ["ID:SIP_PORT ..."]
#   CTI_PBX_TRUNK_SECRET [trunk-secret]  CTI_ARI_USER [cti]  CTI_ARI_PASSWORD [cti-secret]
#   CTI_ARI_APP [cti]  CTI_PBX_AGENTS ["1001 ... 1010"]
#   CTI_PBX_TEMPLATES, CTI_PBX_ETC, CTI_PBX_RENDER_ONLY=1: render elsewhere and stop (a check)
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true

T=${CTI_PBX_TEMPLATES:-/opt/cti-pbx/templates}
E=${CTI_PBX_ETC:-/etc/asterisk}
INSTANCE=${CTI_PBX_SYSTEMNAME:?set CTI_PBX_SYSTEMNAME (this PBX id, as in the asterisks: setting of the CTI)}
SYSTEMNAME=$INSTANCE
HTTP_PORT=${CTI_PBX_HTTP_PORT:-8088}; SIP_PORT=${CTI_PBX_SIP_PORT:-5060}
RTP_START=${CTI_PBX_RTP_START:-10000}; RTP_END=${CTI_PBX_RTP_END:-10999}
ARI_USER=${CTI_ARI_USER:-cti}; ARI_PASSWORD=${CTI_ARI_PASSWORD:-cti-secret}; ARI_APP=${CTI_ARI_APP:-cti}
TRUNKS=${CTI_PBX_TRUNKS:-}; TRUNK_SECRET=${CTI_PBX_TRUNK_SECRET:-trunk-secret}
AGENTS=${CTI_PBX_AGENTS:-$(seq -s ' ' 1001 1010)}
ETC_DIR=$E RUN_DIR=/run/asterisk DB_DIR=/var/lib/asterisk SPOOL_DIR=/var/spool/asterisk
LOG_DIR=/var/log/asterisk CACHE_DIR=/var/cache/asterisk KEYS_DIR=/etc/asterisk-keys
TLS_CONF="; no TLS in the container (ws:// only)"
SYSTEMNAME_CONF="systemname = $SYSTEMNAME"

render() {   # template -> stdout, replacing @NAME@ with the value of shell variable NAME
  local text var
  text=$(<"$1")
  for var in INSTANCE HTTP_PORT SIP_PORT RTP_START RTP_END ARI_USER ARI_PASSWORD ARI_APP \
    ETC_DIR RUN_DIR DB_DIR SPOOL_DIR LOG_DIR CACHE_DIR AGENT TLS_CONF KEYS_DIR \
    SYSTEMNAME SYSTEMNAME_CONF PEER PEER_PORT TRUNK_SECRET; do
    text=${text//@$var@/${!var:-}}
  done
  if [[ $text =~ @[A-Z_]+@ ]]; then echo "$1: unknown placeholder ${BASH_REMATCH[0]}" >&2; exit 1; fi
  printf '%s\n' "$text"
}

rm -rf "${E:?}"/*
for f in "$T"/*.conf; do
  case ${f##*/} in pjsip_agent.conf | pjsip_webrtc_agent.conf | pjsip_trunk.conf) continue ;; esac
  render "$f" >"$E/${f##*/}"
done
: >"$E/pjsip_agents.conf"
for AGENT in $AGENTS; do render "$T/pjsip_agent.conf" >>"$E/pjsip_agents.conf"; done
: >"$E/pjsip_trunks.conf"
for t in $TRUNKS; do
  PEER=${t%%:*}; PEER_PORT=${t#*:}
  render "$T/pjsip_trunk.conf" >>"$E/pjsip_trunks.conf"
done
[ -z "${CTI_PBX_RENDER_ONLY:-}" ] || exit 0   # a check of the rendering (no Asterisk here)
mkdir -p /run/asterisk /var/spool/asterisk/recording
chown -R asterisk:asterisk "$E" /run/asterisk /var/lib/asterisk /var/log/asterisk \
  /var/spool/asterisk /var/cache/asterisk
echo "[pbx] $SYSTEMNAME: ARI http://127.0.0.1:$HTTP_PORT/ari, SIP 127.0.0.1:$SIP_PORT, RTP $RTP_START-$RTP_END${TRUNKS:+, trunks $TRUNKS}"
exec asterisk -f -n -U asterisk -G asterisk -C "$E/asterisk.conf"
