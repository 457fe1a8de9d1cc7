"""Eviction checks kept by the hour, off the timer heap until their hour comes.

Every customer has one eviction check, at `last event + horizon` (engine
module docstring). As a heap entry that is a 4-tuple and a datetime, 120
bytes per customer held, and every new customer pays a push into the
biggest heap of the process (issue 13: under 1 KB per customer). Here a
check due later than the watermark's hour waits as a bare customer id in
the list of its hour, and one *marker* entry per hour sits in the heap.
When the watermark reaches an hour's start, the marker pops and every
customer of the hour gets its eviction entry, `(last event + horizon,
customer, evict index, "")`, exactly as it had one before.

So the heap pops the same entries in the same order as if every check
were in it all along: each is pushed before the watermark can reach it
(its hour started at or before its deadline), and the marker sorts before
every real entry of its instant (its customer id is empty, and real ones
never are). An entry pushed when its hour has already begun goes to the
heap at once. A check read at the hour's start uses the customer's newest
event, which is what the entry first pushed would have been moved to when
it came due (engine `_due`), so no step of eviction changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from heapq import heappush

HOUR = timedelta(hours=1)
MARKER = ""  # the customer id of an hour's marker entry: no customer has it
EVICT_KEY = ""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Heap = list[tuple[datetime, str, int, str]]


class Evictions:
    """The customers whose eviction check falls in each future hour."""

    __slots__ = ("hours", "index", "_last")

    def __init__(self, index: int) -> None:
        self.index = index  # the engine's eviction index: sorts after every rule at a deadline
        self.hours: dict[datetime, list[str]] = {}
        # The hour last added to, (start, end, its list): new customers come in time order, so
        # they mostly share it, and two comparisons cost a tenth of the hour's modulo and
        # the hash of an aware datetime (about 4 us together, the most of a new customer).
        self._last: tuple[datetime, datetime, list[str]] | None = None

    def add(
        self, heap: Heap, customer_id: str, deadline: datetime, watermark: datetime | None
    ) -> bool:
        """Schedule the customer's eviction check at `deadline`; True when it is due already."""
        last = self._last
        if (
            last is not None
            and last[0] <= deadline < last[1]
            and (watermark is None or last[0] > watermark)
        ):
            last[2].append(customer_id)
            return False
        hour = deadline - (deadline - _EPOCH) % HOUR
        if watermark is not None and hour <= watermark:  # its hour has begun: into the heap
            heappush(heap, (deadline, customer_id, self.index, EVICT_KEY))
            return deadline <= watermark
        members = self.hours.get(hour)
        if members is None:
            members = self.hours[hour] = []
            heappush(heap, (hour, MARKER, self.index, EVICT_KEY))
        members.append(customer_id)
        self._last = (hour, hour + HOUR, members)
        return False

    def take(self, hour: datetime) -> list[str]:
        """The customers of the hour whose marker just popped (each at most once per add)."""
        if self._last is not None and self._last[0] == hour:
            self._last = None  # its list leaves `hours`: nothing may be added to it now
        return self.hours.pop(hour, [])

    def __len__(self) -> int:
        return sum(len(members) for members in self.hours.values())
