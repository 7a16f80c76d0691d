"""Customer lookup for the desk: the local store at once, the external CRM when it answers.

The screen pop must never wait on the external CRM: `lookup_fast` answers from the local store
(and from the external cache when it holds a fresh answer); `lookup_external` is awaited in the
background and its result merged in when it comes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cti.domain.crm import (
    DEFAULT_REGION,
    CallSummary,
    Customer,
    RowError,
    lookup_key,
    merge_customers,
    parse_customer_csv,
)
from cti.features.crm.external import ExternalCrm, ExternalCrmUnavailable
from cti.features.crm.storage import CustomerRepository
from cti.platform.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CustomerView:
    """What the desk shows about a caller: the record (if any), the number, recent calls."""

    number: str  # E.164 when the caller id is a phone number, else the raw caller id
    customer: Customer | None
    history: tuple[CallSummary, ...] = ()
    external_pending: bool = False
    external_error: str | None = None
    sources: tuple[str, ...] = field(default_factory=tuple)


class CrmLookup:
    def __init__(
        self,
        customers: CustomerRepository,
        external: ExternalCrm | None = None,
        *,
        default_region: str = DEFAULT_REGION,
        history_limit: int = 5,
    ) -> None:
        self.customers = customers
        self.external = external
        self.default_region = default_region
        self.history_limit = history_limit

    def key(self, raw_number: str) -> str | None:
        return lookup_key(raw_number, self.default_region)

    async def lookup_fast(self, raw_number: str) -> CustomerView:
        """Local store (+ a fresh external cache entry); never waits on the external CRM."""
        number = self.key(raw_number)
        if number is None:
            return CustomerView(number=raw_number, customer=None)
        local, local_history = await self.customers.by_number_with_history(
            number, self.history_limit
        )
        customer = local
        history = tuple(local_history)
        pending = False
        sources: tuple[str, ...] = ("local",) if local else ()
        if self.external is not None:
            hit, cached = self.external.cached(number)
            if hit:
                customer = merge_customers(local, cached)
                if cached is not None:
                    sources += ("external",)
            else:
                pending = True
        return CustomerView(number, customer, history, external_pending=pending, sources=sources)

    async def lookup_external(self, fast: CustomerView) -> CustomerView:
        """`fast` completed with the external CRM's answer; on failure `fast` with the error."""
        if self.external is None or not fast.external_pending:
            return fast
        try:
            found = await self.external.lookup(fast.number)
        except ExternalCrmUnavailable as exc:
            log.warning("crm.external_failed", number=fast.number, error=exc.message)
            return CustomerView(
                fast.number, fast.customer, fast.history, external_error=exc.message,
                sources=fast.sources,
            )
        merged = merge_customers(fast.customer, found)  # pending: fast.customer is local-only
        same_numbers = merged is not None and fast.customer is not None and (
            merged.numbers == fast.customer.numbers
        )
        history = fast.history if same_numbers else await self._history(merged, fast.number)
        sources = fast.sources + (("external",) if found is not None else ())
        return CustomerView(fast.number, merged, history, sources=sources)

    async def lookup(self, raw_number: str) -> CustomerView:
        """Both stores, waiting for the external one (bounded by its timeout): for the API."""
        return await self.lookup_external(await self.lookup_fast(raw_number))

    async def _history(self, customer: Customer | None, number: str) -> tuple[CallSummary, ...]:
        target = customer or Customer(id=None, numbers=(number,))
        return tuple(await self.customers.history(target, self.history_limit))


IMPORT_BATCH = 500


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    rejected: list[RowError] = field(default_factory=list)


async def import_customers(
    customers: CustomerRepository,
    lines: Iterable[str],
    default_region: str = DEFAULT_REGION,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Load a customer CSV: good rows in batches, bad rows reported with their line numbers.
    `progress(n)` is called with the number of rows handled since the last call."""
    result = ImportResult()
    batch: list[tuple[int, Customer]] = []

    async def flush() -> None:
        outcome = await customers.import_batch([c for _, c in batch])
        result.added += outcome.added
        result.updated += outcome.updated
        result.rejected += [RowError(batch[i][0], reason) for i, reason in outcome.conflicts]
        if progress is not None:
            progress(len(batch))
        batch.clear()

    for line, item in parse_customer_csv(lines, default_region):
        if isinstance(item, RowError):
            result.rejected.append(item)
            if progress is not None:
                progress(1)
            continue
        batch.append((line, item))
        if len(batch) >= IMPORT_BATCH:
            await flush()
    if batch:
        await flush()
    result.rejected.sort(key=lambda r: r.line)
    return result
