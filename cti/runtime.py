"""Wiring: builds the adapters and services from settings, runs the ARI loop and the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from cti.domain.agents.state import AgentState
from cti.domain.callbacks import QueueCallbackPolicy
from cti.domain.handover import ReminderPolicy
from cti.domain.ivr.loader import FlowRefs, FlowStore
from cti.events import FallbackReached
from cti.features.calls.dispatch import StasisDispatcher
from cti.features.calls.inbound import CallScript, InboundCalls
from cti.features.calls.registry import CallRegistry, CallSession
from cti.features.calls.resync import Resync
from cti.features.calls.storage import CallRepository
from cti.features.complaint_callbacks.service import ComplaintCallbacks
from cti.features.crm.caller_lookup import CallerLookup
from cti.features.desk.desk import AgentDesk
from cti.features.desk.screen_pop import CompanyNames
from cti.features.events.metrics import EventMetrics
from cti.features.events.queue_log_file import QueueLogFile
from cti.features.events.store import EventLog
from cti.features.fallback.service import QueueFallback
from cti.features.fallback.voicemail import Voicemails
from cti.features.handover.service import HandoverNotifier, HandoverReminders, Handovers
from cti.features.handover.storage import HandoverStore
from cti.features.ivr.call_script import IvrCallScript
from cti.features.ivr.caller_audio import CallerAudioTap
from cti.features.ivr.checkpoints import CHECKPOINT_SWEEP_AGE, CheckpointStore, CheckpointWriter
from cti.features.ivr.prompts import PromptSource
from cti.features.ivr.runner import IvrRunner
from cti.features.knowledge.service import GapNotifier, KnowledgeBase
from cti.features.knowledge.storage import KnowledgeStore
from cti.features.messages.service import FollowUps, make_senders
from cti.features.messages.storage import OutboxStore
from cti.features.monitoring.service import ROLE as MONITOR_ROLE
from cti.features.monitoring.service import Monitoring
from cti.features.outbound.service import AGENT_ARG as OUTBOUND_AGENT_ARG
from cti.features.outbound.service import CUSTOMER_ARG as OUTBOUND_CUSTOMER_ARG
from cti.features.outbound.service import OutboundCalls
from cti.features.pbxs.status import PbxStatus
from cti.features.pbxs.watch import PbxWatch
from cti.features.procedures.audit import ProcedureAudit
from cti.features.procedures.events import AuditPublisher
from cti.features.recordings.service import CallRecordings
from cti.features.reports.live import LiveStats
from cti.features.reports.rollups import Rollups
from cti.features.review.forms import EvaluationForms
from cti.features.review.service import CallReviews
from cti.features.review.storage import EvaluationStore
from cti.features.routing.acd import AGENT_LEG_ARG, CALLBACK_LEG_ARG, Acd
from cti.features.routing.call_routing import CallRouting
from cti.features.routing.queue_callbacks import QueueCallbacks
from cti.features.routing.storage import RoutingLog
from cti.features.surveys.service import Surveys
from cti.features.surveys.storage import SurveyStore
from cti.features.transfers.service import TRANSFER_LEG_ARG, TransferControl
from cti.features.work_orders.config import WorkOrderRules
from cti.features.work_orders.driver import WorkOrderDriver
from cti.features.work_orders.notify import WorkOrderNotifier
from cti.features.work_orders.service import WorkOrders
from cti.features.work_orders.storage import WorkOrderStore
from cti.platform.ari.client import AriClient, ConnectHandler, DisconnectHandler, EventHandler
from cti.platform.ari.events import AriEvent, PlaybackFinished
from cti.platform.ari.pbx_set import CURRENT_PBX, PbxSet
from cti.platform.ari.telephony import AriTelephony
from cti.platform.bus import InProcessBus
from cti.platform.clock import Clock, SystemClock
from cti.platform.cluster.active import ActiveRole
from cti.platform.cluster.node import ClusterNode, ClusterStatus
from cti.platform.db.base import describe_db_error, make_engine, make_sessionmaker, warm_up
from cti.platform.db.health import DatabaseHealth
from cti.platform.db.migrate import upgrade_async
from cti.platform.db.pending_callbacks import PendingCallbackStore
from cti.platform.errors import (
    ConfigError,
    TelephonyError,
    TelephonyTimeout,
    TelephonyUnavailable,
)
from cti.platform.log import get_logger
from cti.platform.metrics import ARI_CONNECTED, ARI_RECONNECTS
from cti.platform.scheduler import LoopScheduler
from cti.platform.settings import Settings

log = get_logger(__name__)


@dataclass
class Service:
    """Everything one running CTI service holds. Built by `Service.build`, no globals."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[Any]
    bus: InProcessBus
    events: EventLog
    calls_repo: CallRepository
    ari: AriClient  # the first Asterisk's (the only one's, usually)
    telephony: AriTelephony | PbxSet  # PbxSet: several Asterisks (settings `asterisks:`)
    registry: CallRegistry
    dispatcher: StasisDispatcher
    inbound: InboundCalls
    resync: Resync
    prompts: PromptSource
    flows: FlowStore
    ivr: IvrRunner
    audit: ProcedureAudit
    checkpoints: CheckpointWriter
    acd: Acd
    desk: AgentDesk
    customers: CallerLookup
    routing: CallRouting
    transfers: TransferControl
    fallback: QueueFallback
    voicemails: Voicemails
    live: LiveStats
    rollups: Rollups
    work_orders: WorkOrders
    work_order_timers: WorkOrderDriver
    recordings: CallRecordings
    reviews: CallReviews
    monitoring: Monitoring
    outbound: OutboundCalls
    complaint_callbacks: ComplaintCallbacks
    queue_callbacks: QueueCallbacks
    handovers: Handovers
    handover_reminders: HandoverReminders
    messages: FollowUps
    knowledge: KnowledgeBase
    surveys: Surveys
    cluster: ClusterStatus
    database: DatabaseHealth
    # every Asterisk by id: its client and its resync (one entry with `ari:`)
    pbx_clients: dict[str, AriClient]
    pbx_resyncs: dict[str, Resync]
    pbx_watch: PbxWatch | None
    pbx_status: PbxStatus
    _ari_tasks: list[asyncio.Task[None]] | None = None
    _takeover_task: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls, settings: Settings, *, clock: Clock | None = None, prompts: PromptSource | None = None
    ) -> Service:
        """Load and check the phrase library and flows (ConfigError on any problem), then build
        the features in order. Each takes what it needs at construction and subscribes to the
        events it reads; none is told anything afterwards (docs/architecture.md)."""
        from cti.features.phrases.library import load_phrase_library, require_no_forbidden
        from cti.features.routing.rules import load_rules
        from cti.platform.audio.library_prompts import LibraryPrompts

        clock = clock or SystemClock()
        require_no_forbidden(
            settings.phrases_dir, settings.flows_dir,
            {"settings company.name": settings.company.name,
             "settings company.name_en": settings.company.name_en},
        )
        library = load_phrase_library(settings.phrases_dir)
        # Flows may route only to queues the routing rules define (checked at load and reload).
        rules = load_rules(settings.rules_file)
        refs = FlowRefs(library.phrases, library.languages, set(rules.queues), library.forbidden)
        flows = FlowStore(settings.flows_dir, refs)
        flows.load()
        if settings.inbound_flow not in flows.flows:
            raise ConfigError(
                f"inbound_flow {settings.inbound_flow!r} is not a flow in {settings.flows_dir} "
                f"(there: {', '.join(sorted(flows.flows))})"
            )
        fallback_flows = _fallback_flows(settings, flows)

        # platform
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        # One client per Asterisk. With one, the telephony is its AriTelephony, as it always
        # was; with several, a PbxSet routes each operation to the PBX holding its subject.
        clients = {pbx.id: AriClient(pbx) for pbx in settings.pbxs()}
        members = {pbx_id: AriTelephony(client) for pbx_id, client in clients.items()}
        ari = next(iter(clients.values()))
        telephony: AriTelephony | PbxSet = (
            PbxSet(members) if len(members) > 1 else next(iter(members.values()))
        )
        if settings.redis_url and not settings.auth_secret:
            raise ConfigError(
                "redis_url turns clustering on: set auth_secret (32+ characters), the same on "
                "every node, so a token signed by one node is good on the others")
        # A cluster (redis_url): the same bus, also carrying events between nodes.
        node = (
            ClusterNode.build(settings.redis_url, settings.database_url, settings.cluster, clock)
            if settings.redis_url else None
        )
        bus = node.bus if node is not None else InProcessBus()
        # One node at a time drives the PBX (the `active` lease); the others stand by.
        role = (
            ActiveRole(node.leases, node.leases.leases, clock,
                       settings.cluster.advertise_url or settings.default_advertise_url(),
                       presence=node.presence)
            if node is not None else None
        )
        if node is not None and role is not None:
            node.leases.on_lost = role.on_lost
            for client in clients.values():  # a node that lost its lease sends the PBX nothing
                client.gate = role.may_drive
            node.presence.info["url"] = role.url  # where peers ask it when Redis is away
        prompts = prompts or LibraryPrompts(library, settings.sounds_dir)

        # the kept event stream, and the figures drawn from it
        events = EventLog(sessions, bus)
        EventMetrics(bus, clock)

        # calls
        repo = CallRepository(sessions)
        registry = CallRegistry()
        dispatcher = StasisDispatcher(registry)

        # IVR, procedures, voicemail
        audit = ProcedureAudit(sessions, clock, bus)
        voicemails = Voicemails(sessions, telephony, clock, bus=bus)
        # each live call's IVR position, for a process that adopts the call (docs/cluster.md)
        checkpoint_store = CheckpointStore(sessions)
        checkpoints = CheckpointWriter(
            checkpoint_store, gate=role.may_drive if role is not None else None)
        runner = IvrRunner(
            telephony, clock, AuditPublisher(bus), prompts, flows,
            procedures=settings.procedures, detection=settings.detection,
            recordings=voicemails, bus=bus, checkpoints=checkpoints,
        )

        # the after-call survey: the ACD asks it before hanging up a caller the agent left
        surveys = Surveys(SurveyStore(sessions), runner, bus, clock, lambda: acd.core.rules)
        # routing (ACD), transfers
        acd = Acd(
            telephony, rules, rules_path=settings.rules_file, bus=bus,
            sink=RoutingLog(sessions), clock=clock, prompts=prompts,
            language=settings.company.language,
            callback_dial=settings.outbound.dial,
            callback_caller_id=settings.outbound.caller_id or None,
            callback_ring_s=settings.outbound.customer_ring_s,
            after_agent=surveys.take_caller,
        )
        QueueLogFile.install(bus, settings.queue_log_file, lambda: acd.core.rules)
        transfers = TransferControl(
            acd, telephony, registry, bus, clock, runner, number_endpoint=settings.transfer_dial,
        )

        # the agent desk (users, CRM, screen pop over the bus) and what its buttons drive
        desk = AgentDesk.build(
            sessions, token_secret=settings.auth_secret, auth_settings=settings.auth,
            company=CompanyNames(settings.company.name, settings.company.name_en),
            external_crm=settings.crm, telephony=telephony, calls=registry, clock=clock,
            bus=bus, agent_states=acd, procedures=runner, transfers=transfers,
        )
        customers = CallerLookup(desk.crm, bus, clock)
        routing = CallRouting(acd, runner, registry, repo, customers, bus, settings.agent_flow)
        queue_callbacks = QueueCallbacks(
            acd, registry, telephony, bus, clock, settings.queue_callback_key, runner=runner,
            store=PendingCallbackStore(sessions), policy=QueueCallbackPolicy(
                settings.queue_callback_attempts,
                timedelta(seconds=settings.queue_callback_retry_s)),
        )
        fallback = QueueFallback(telephony, runner, registry, repo, fallback_flows)
        # supervisors' live figures (docs/metrics.md), from the same stream
        hours = rules.business_hours
        live = LiveStats(bus, events, desk.hub, clock, acd.queue_targets,
                         hours.timezone if hours else "UTC")
        rollups = Rollups(sessions, events, acd.queue_targets, bus)  # quarter hours kept
        bus.subscribe("fallback.flows", fallback.on_fallback_reached, (FallbackReached,))
        # work orders (docs/work_orders.md): the owner and the supervisors hear on the desk
        work_orders = WorkOrders(
            WorkOrderStore(sessions), WorkOrderRules(settings.work_orders_file), bus, clock,
            customers=desk.customers,
        )
        WorkOrderNotifier(bus, desk.hub, work_orders.store)
        work_order_timers = WorkOrderDriver(work_orders, clock)
        # the shift handover log (docs/shift_handover.md): reminded to those on shift
        handovers = Handovers(
            HandoverStore(sessions), bus, clock, ReminderPolicy(
                timedelta(minutes=settings.handover.remind_after_min),
                timedelta(minutes=settings.handover.remind_every_min)),
            orders=work_orders.store,
        )
        HandoverNotifier(bus, desk.hub, handovers.store, lambda: [
            a for a, st in acd.core.agents.items() if st.state is not AgentState.LOGGED_OUT])
        handover_reminders = HandoverReminders(handovers, clock)
        # follow-up e-mail and SMS from the work orders' events, through the outbox
        messages = FollowUps(
            settings.messages, OutboxStore(sessions), bus, clock,
            orders=work_orders.store, customers=desk.customers,
            senders=make_senders(settings.messages),
            company={"zh": settings.company.name, "en": settings.company.name_en},
            language=settings.company.language,
        )
        # the knowledge base; its gaps go to the supervisors' desk (and by e-mail: messages)
        knowledge = KnowledgeBase(KnowledgeStore(sessions), bus, clock)
        GapNotifier(bus, desk.hub)
        # call recording: queues with `record: true` (the running rules, reloads included)
        recordings = CallRecordings(
            sessions, telephony, clock, bus, lambda: acd.core.rules,
            retention_days=settings.recordings.retention_days,
            sweep_every_s=settings.recordings.sweep_every_s,
        )
        # quality review (docs/quality_review.md): the time line and evaluations per form
        reviews = CallReviews(
            events, recordings, RoutingLog(sessions),
            EvaluationForms(settings.evaluation_forms_dir), EvaluationStore(sessions), clock,
            bus, lambda agent: _team_of(acd, agent),
        )
        # supervisors' listen / whisper / barge on connected calls (docs/monitoring.md)
        monitoring = Monitoring(telephony, acd, bus, clock)

        # the calls' lifecycle: each answered call runs its IVR script
        def script_factory(session: CallSession) -> CallScript:
            tap = CallerAudioTap(telephony, registry, settings.detection)
            return IvrCallScript(
                runner, repo, settings, tap, settings.inbound_flow, customers, bus,
                checkpoints=checkpoint_store,
            )

        det = settings.detection
        inbound = InboundCalls(
            telephony, registry, repo, clock, script_factory,
            talk_detect=(det.talk_detect_silence_ms, det.talk_detect_threshold), bus=bus,
        )
        if isinstance(telephony, PbxSet):
            pbx_set = telephony
            resyncs = {
                pbx_id: Resync(
                    member, registry, repo, inbound, clock, routing, pbx=pbx_id,
                    owns=lambda ch, p=pbx_id: pbx_set.owns(p, ch),  # type: ignore[misc]
                )
                for pbx_id, member in members.items()
            }
            pbx_watch: PbxWatch | None = PbxWatch(
                pbx_set, registry, inbound, routing, acd,
                lambda: {a: p.endpoint for a, p in acd.core.rules.agents.items()},
                LoopScheduler(), {p.id: p.lost_after_s for p in settings.pbxs()},
            )
        else:
            only = next(iter(members.values()))
            resyncs = {
                settings.pbxs()[0].id: Resync(
                    only, registry, repo, inbound, clock, routing, pbx=settings.pbxs()[0].id
                )
            }
            pbx_watch = None
        resync = next(iter(resyncs.values()))
        # calls the agents place from the page (docs/outbound_calls.md)
        outbound = OutboundCalls(telephony, registry, repo, acd, inbound, bus, clock,
                                 settings.outbound)
        # a resolved complaint's call-back, through the owner agent (docs/complaint_callbacks.md)
        complaint_callbacks = ComplaintCallbacks(work_orders, outbound, acd, bus, clock,
                                                 store=PendingCallbackStore(sessions))

        # ARI events by channel role: callers, agent legs, outside transfer legs
        dispatcher.on_start("inbound", inbound.on_stasis_start)
        dispatcher.on_start(AGENT_LEG_ARG, routing.on_agent_leg_start)
        dispatcher.on_start(CALLBACK_LEG_ARG, routing.on_callback_leg_start)
        dispatcher.on_start(TRANSFER_LEG_ARG, transfers.on_outside_leg_start)
        dispatcher.on_start(MONITOR_ROLE, monitoring.on_stasis_start)
        dispatcher.on_start(OUTBOUND_AGENT_ARG, outbound.on_stray)
        dispatcher.on_start(OUTBOUND_CUSTOMER_ARG, outbound.on_stray)
        dispatcher.listen(routing.on_ari_event)

        async def announcement_ended(event: AriEvent) -> None:
            if isinstance(event, PlaybackFinished):  # a waiting caller's music comes back
                acd.on_playback_finished(event.playback.id)

        dispatcher.listen(announcement_ended)
        dispatcher.listen(voicemails.on_ari_event)
        dispatcher.listen(transfers.on_ari_event)
        dispatcher.listen(recordings.on_ari_event)
        dispatcher.listen(monitoring.on_ari_event)
        # the database's state, and what each writer keeps while it is away (GET /health)
        database = DatabaseHealth(engine, clock)
        database.keeps("call_log", lambda: repo.pending)
        database.keeps("events", lambda: events.pending)
        database.keeps("routing_decisions", lambda: acd.decision_log.pending)
        database.keeps("ivr_checkpoints", lambda: checkpoints.pending)
        database.keeps("procedure_audit", lambda: audit.pending)
        return cls(
            settings=settings, clock=clock, engine=engine, sessions=sessions, bus=bus,
            events=events, calls_repo=repo, ari=ari, telephony=telephony, registry=registry,
            dispatcher=dispatcher, inbound=inbound, resync=resync, prompts=prompts, flows=flows,
            ivr=runner, audit=audit, checkpoints=checkpoints, acd=acd, desk=desk,
            customers=customers, routing=routing,
            transfers=transfers, fallback=fallback, voicemails=voicemails, live=live,
            rollups=rollups, work_orders=work_orders, work_order_timers=work_order_timers,
            recordings=recordings, reviews=reviews, monitoring=monitoring, outbound=outbound,
            complaint_callbacks=complaint_callbacks, queue_callbacks=queue_callbacks,
            handovers=handovers,
            handover_reminders=handover_reminders, messages=messages, knowledge=knowledge,
            surveys=surveys, cluster=ClusterStatus(node, role), database=database,
            pbx_clients=clients,
            pbx_resyncs=resyncs, pbx_watch=pbx_watch,
            pbx_status=PbxStatus(
                clients, telephony.lost if isinstance(telephony, PbxSet) else None, resyncs
            ),
        )

    def _handlers_for(
        self, pbx_id: str
    ) -> tuple[EventHandler, ConnectHandler, DisconnectHandler]:
        """The event, connect and disconnect handlers of one Asterisk's client."""
        resync = self.pbx_resyncs[pbx_id]
        several = self.telephony if isinstance(self.telephony, PbxSet) else None
        client = self.pbx_clients[pbx_id]

        async def on_connect(generation: int) -> None:
            ARI_CONNECTED.set(1)
            ARI_RECONNECTS.inc()
            try:
                if several is not None and self.pbx_watch is not None:
                    await self.pbx_watch.on_connected(pbx_id)
                    # what is in the app now is this PBX's (legs of an earlier process)
                    member = several.members[pbx_id]
                    for channel_id in await member.application_channel_ids():
                        several.channels.setdefault(channel_id, pbx_id)
                    for bridge in await member.list_bridges():
                        several.bridges.setdefault(bridge.id, pbx_id)
                await resync(generation)
                await self.monitoring.on_connect()
            except TelephonyError as exc:
                log.error("ari.resync_failed", pbx=pbx_id, error=exc.message)

        async def on_event(event: AriEvent) -> None:
            if several is not None:
                several.observe(event)
            await self.dispatcher.dispatch(event)

        async def on_disconnect() -> None:
            if self.pbx_watch is not None and not client.connected.is_set():
                await self.pbx_watch.on_disconnected(pbx_id)

        return on_event, on_connect, on_disconnect

    async def start(self) -> None:
        """Migrate, check the PBX, then drive it (one box, or the active node of a cluster);
        a cluster node that is not active stands by and takes over when the active one goes
        (docs/cluster.md, "Takeover")."""
        if self.settings.auto_migrate:
            try:
                await upgrade_async(self.settings.database_url)
            except Exception as exc:  # unreachable server, bad URL, no permission
                raise ConfigError(describe_db_error(self.settings.database_url, exc)) from None
        await self._check_pbxs()  # fail fast: URL, password, systemname
        try:
            await warm_up(self.engine)
            self.bus.continue_after(await self.events.last_seq())  # one stream across restarts
            if self.cluster.node is not None:
                await self.cluster.node.start(self.bus.last_seq)
            # IVR checkpoints of calls that ended while no process ran them
            await self.checkpoints.store.sweep(self.clock.now() - CHECKPOINT_SWEEP_AGE)
        except (SQLAlchemyError, OSError) as exc:  # e.g. auto_migrate off and no schema yet
            raise ConfigError(describe_db_error(self.settings.database_url, exc)) from None
        self.database.start()
        await self.live.start()  # today's figures again, before anything new happens
        role = self.cluster.role
        if role is None:
            await self._activate()
        else:
            self._takeover_task = asyncio.create_task(self._take_over(), name="takeover")

    async def _take_over(self) -> None:
        assert self.cluster.role is not None
        await self.cluster.role.wait_active()
        started = self.clock.monotonic()
        try:
            await self._activate()
        except Exception as exc:
            # Half active is not safe to keep: give the lease up by ending, a peer takes over.
            log.exception("cluster.takeover_failed")
            self.cluster.role.fence(f"takeover failed: {exc}")
            return
        self.cluster.activated_in_s = self.clock.monotonic() - started
        log.info("cluster.took_over", resync=self.resync.last,
                 activate_s=round(self.cluster.activated_in_s, 3))

    async def _activate(self) -> None:
        """Drive the PBX: agents as the record left them, the event socket and its resync
        (which adopts the calls up on the PBX), the ACD and the timers."""
        try:
            # Agents as the last process left them, before the resync adopts its calls; the
            # quarter hours kept caught up with the events meanwhile (a takeover is timed).
            states, _ = await asyncio.gather(
                RoutingLog(self.sessions).last_agent_states(), self.rollups.start())
        except (SQLAlchemyError, OSError) as exc:
            raise ConfigError(describe_db_error(self.settings.database_url, exc)) from None
        await self.acd.restore_agents(states)
        reachable = await self._check_pbxs()  # again: a takeover comes long after the start
        self._ari_tasks = []
        for pbx_id, client in self.pbx_clients.items():
            client.set_handlers(*self._handlers_for(pbx_id))
            self._ari_tasks.append(
                asyncio.create_task(self._run_ari(client, pbx_id), name=f"ari-events-{pbx_id}")
            )
        for client in reachable:
            try:
                await asyncio.wait_for(
                    client.connected.wait(), client.settings.request_timeout * 2
                )
            except TimeoutError:
                raise TelephonyUnavailable(
                    f"ARI at {client.settings.url} answers REST but its event socket for app "
                    f"{client.settings.app!r} did not connect"
                ) from None
        await self.acd.start()
        self.work_order_timers.start()
        self.complaint_callbacks.start()
        self.queue_callbacks.start()  # those the last process left, back at their place
        self.handover_reminders.start()
        self.recordings.start()  # the retention sweep
        self.messages.start()  # the outbox: what the last process left unsent goes first
        # The start-up heap (libraries, rules, phrase library, flows) never becomes garbage:
        # moved out of the collector's reach, a full collection no longer walks it. Walking
        # it paused the event loop ~100 ms, the p99 of arrival-to-ring at 20 calls/s.
        gc.collect()
        gc.freeze()

    async def _check_pbxs(self) -> list[AriClient]:
        """Fail fast on a wrong URL, password or systemname. With several Asterisks, one that
        cannot be reached now is started as lost (its client keeps trying; when it answers,
        its resync runs): the others need not wait for it. The reachable ones are returned."""
        several = self.telephony if isinstance(self.telephony, PbxSet) else None
        reachable = []
        for pbx_id, client in self.pbx_clients.items():
            try:
                info = await client.request("GET", "asterisk/info")
            except (TelephonyUnavailable, TelephonyTimeout) as exc:
                if several is None:
                    raise
                log.error("pbx.unreachable_at_start", pbx=pbx_id, error=exc.message)
                several.lost.add(pbx_id)
                continue
            if several is not None:
                _check_systemname(pbx_id, client, info)
            reachable.append(client)
        if not reachable:
            raise TelephonyUnavailable(
                "no Asterisk answers: " + ", ".join(
                    f"{p} ({c.settings.url})" for p, c in self.pbx_clients.items())
            )
        return reachable

    async def _run_ari(self, client: AriClient, pbx_id: str) -> None:
        # Everything this task runs, and the tasks it starts (a call's own), knows its PBX:
        # what they create without naming a channel goes there (PbxSet).
        CURRENT_PBX.set(pbx_id)
        try:
            await client.run()
        finally:
            ARI_CONNECTED.set(0)

    async def stop(self) -> None:
        if self.cluster.role is not None:
            await self.cluster.role.aclose()  # a clean stop is not a lost lease
        if self._takeover_task is not None:
            self._takeover_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._takeover_task
        await self.inbound.shutdown()
        await self.ivr.cancel_all()
        # The calls' positions are written while the lease is still this node's: the node
        # taking over reads them, and a write of ours landing after its own would undo them.
        await self.checkpoints.close()
        await self.monitoring.aclose()
        await self.acd.aclose()
        await self.work_order_timers.aclose()
        await self.complaint_callbacks.aclose()
        await self.queue_callbacks.aclose()
        await self.handover_reminders.aclose()
        await self.recordings.aclose()
        await self.messages.aclose()
        await self.customers.aclose()
        await self.desk.aclose()
        # The event sockets close before the lease is given up (node.aclose): the node taking
        # over must not share the PBXs with this one.
        if self.pbx_watch is not None:
            await self.pbx_watch.aclose()
        for client in self.pbx_clients.values():
            await client.close()
        for task in self._ari_tasks or []:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.cluster.node is not None:
            await self.cluster.node.aclose()  # the bus too, once its events are on the stream
            await self.cluster.aclose()
        await self.bus.aclose()
        await self.audit.close()
        await self.voicemails.flush()
        await self.calls_repo.aclose()  # call rows kept while the database was away
        await self.database.aclose()
        await self.engine.dispose()


def _check_systemname(pbx_id: str, client: AriClient, info: Any) -> None:
    """With several Asterisks, each one's systemname must be its id: the channel ids it makes
    start with it, which is how a call adopted after a restart is found on its PBX."""
    name = str(((info or {}).get("config") or {}).get("name", ""))
    if name != pbx_id:
        raise ConfigError(
            f"Asterisk {pbx_id!r} at {client.settings.url} has systemname {name or '(none)'!r}: "
            f"set `systemname = {pbx_id}` in its asterisk.conf [options] (each Asterisk's "
            "systemname must be its id in asterisks:)"
        )


def _team_of(acd: Acd, agent_id: str) -> str | None:
    profile = acd.core.rules.agents.get(agent_id)
    return profile.team or None if profile is not None else None


def _fallback_flows(settings: Settings, flows: FlowStore) -> dict[str, str | None]:
    """The flows of the call-back and voicemail fallbacks. One named in the settings must
    exist; the defaults (shipped in ivr_flows/) may be missing from a flows directory of one's
    own, and such a fallback then hangs up, as said at start."""
    chosen = settings.fallback_flows.model_dump()
    explicit = "fallback_flows" in settings.model_fields_set
    for action, name in chosen.items():
        if name is None or name in flows.flows:
            continue
        if explicit:
            raise ConfigError(
                f"fallback_flows.{action} {name!r} is not a flow in {settings.flows_dir} "
                f"(there: {', '.join(sorted(flows.flows))}; null hangs up instead)"
            )
        log.warning("fallback_flow_missing", action=action, flow=name,
                    flows_dir=str(settings.flows_dir),
                    effect=f"callers sent to the {action} fallback are hung up")
        chosen[action] = None
    return chosen
