"""A number transfer's target goes into a dial string: only a phone number may get there."""

from __future__ import annotations

from typing import Any, cast

import pytest

from cti.features.transfers.service import TransferControl
from cti.platform.errors import ConfigError


class _Nothing:
    """Fails the test if the transfer touched the ACD, the PBX or the calls."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"touched {name} for a refused number")


@pytest.mark.parametrize("target", ["1234@elsewhere", "PJSIP/2000", "1000&PJSIP/2001", "", "12 34"])
async def test_a_target_that_is_not_a_number_is_refused_before_dialling(target: str) -> None:
    nothing = cast(Any, _Nothing())
    control = TransferControl(nothing, nothing, nothing, nothing, nothing,
                              number_endpoint="PJSIP/{number}@trunk")
    with pytest.raises(ConfigError, match="not a phone number to dial"):
        await control.transfer("c1", agent_id="1001", target_type="number", target=target,
                               kind="blind")
