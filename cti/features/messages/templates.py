"""config/messages.yaml: the text of every follow-up message, per channel and language.

Checked at load like the other administrators' files: unknown keys, a message kind that does
not exist, a placeholder the message does not have, a missing zh or en text, an e-mail without
a subject; every error names file:line:col.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cti.domain.messages import (
    LANGUAGES,
    TEMPLATE_FIELDS,
    Channel,
    TemplateError,
    Templates,
    Text,
    check_template,
)
from cti.platform.yaml_source import load_yaml, validate_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextSpec(_Strict):
    subject: str = Field(default="", max_length=255)
    body: str = Field(min_length=1, max_length=4000)


class ChannelsSpec(_Strict):
    email: dict[str, TextSpec] | None = None
    sms: dict[str, TextSpec] | None = None


class TemplatesFile(_Strict):
    templates: dict[str, ChannelsSpec]

    @model_validator(mode="after")
    def _check(self) -> TemplatesFile:
        for kind, channels in self.templates.items():
            if kind not in TEMPLATE_FIELDS:
                raise ValueError(f"unknown message {kind!r} (known: {', '.join(TEMPLATE_FIELDS)})")
            for channel in Channel:
                texts = getattr(channels, channel.value)
                if texts is None:
                    continue
                missing = [lang for lang in LANGUAGES if lang not in texts]
                extra = [lang for lang in texts if lang not in LANGUAGES]
                if missing or extra:
                    raise ValueError(f"{kind}.{channel}: needs exactly the languages "
                                     f"{', '.join(LANGUAGES)} (missing: {missing}, unknown: "
                                     f"{extra})")
                for lang, text in texts.items():
                    if channel is Channel.EMAIL and not text.subject:
                        raise ValueError(f"{kind}.email.{lang}: an e-mail needs a subject")
                    try:
                        check_template(kind, text.subject)
                        check_template(kind, text.body)
                    except TemplateError as exc:
                        raise ValueError(f"{kind}.{channel}.{lang}: {exc}") from None
        return self


def load_templates(path: Path) -> Templates:
    """The templates of `path`; ConfigError with file:line:col when broken."""
    spec = validate_yaml(TemplatesFile, load_yaml(path), str(path))
    return Templates({
        kind: {
            channel: {lang: Text(t.body, t.subject) for lang, t in texts.items()}
            for channel in Channel
            if (texts := getattr(channels, channel.value)) is not None
        }
        for kind, channels in spec.templates.items()
    })
