"""`Replay(decide_from=F)`, the warm-up of `backtest --from`: state from every event,
decisions only from F.

The engine's candidates do not depend on the policy's answers when no rule follows up
on a sent offer (examples/rules.yaml has none), so a replay with a warm-up must find
exactly the candidates of the whole replay that were triggered at or after F, and
count the others; the timers armed before F (dormancy, missed salary) fire after it as
in the whole replay. The contact policy starts with an empty history at F, so only
the candidates, not their outcomes, are compared here (tests/e2e/test_cli_history.py
checks the outcomes on a copied live history).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keymoment.config import RulesFile, load_rules
from keymoment.connectors.customers import parse_profile
from keymoment.connectors.generator import Generator
from keymoment.flows.feedback import Logged, sent_in_log
from keymoment.flows.replay import Replay
from keymoment.policy import FirstChannelPolicy, build_policy
from keymoment.state import MemoryCapStore
from keymoment.triggers.events import CustomerProfile

RULES = Path(__file__).resolve().parents[2] / "examples" / "rules.yaml"
Key = tuple[str, str, str | None, datetime]  # rule, customer, event, triggered_at


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, RulesFile, datetime]:
    gen = Generator(seed=11, customers=400, days=200)
    path = tmp_path_factory.mktemp("from") / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in gen.iter_bytes()))
    profiles = {p["customer_id"]: parse_profile(p) for p in gen.profiles()}
    return path, profiles, load_rules(RULES), gen.until_at


def replay(
    stream: tuple[Path, dict[str, CustomerProfile], RulesFile, datetime],
    decide_from: datetime | None,
) -> tuple[Counter[Key], Replay]:
    path, profiles, rules, until = stream
    policy = build_policy(rules, store=MemoryCapStore())
    run = Replay(rules, profiles, policy, until=until, decide_from=decide_from)
    return keys(r for out in run.outputs([str(path)]) for r in out.decision_records()), run


def keys(records: Iterable[dict]) -> Counter[Key]:
    """The candidates of decision records, with their counts."""
    return Counter(
        (r["rule_id"], r["customer_id"], r["event_id"], datetime.fromisoformat(r["triggered_at"]))
        for r in records
    )


@pytest.fixture(scope="module")
def whole(stream) -> Counter[Key]:  # type: ignore[no-untyped-def]
    return replay(stream, None)[0]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_warm_up_decides_the_whole_replays_candidates_from_its_end(
    stream, whole: Counter[Key], data: st.DataObject
) -> None:  # type: ignore[no-untyped-def]
    """F anywhere in the stream, or exactly a candidate's time (decided: at or after F)."""
    times = sorted({k[3] for k in whole})
    start = times[0].replace(hour=0, minute=0, second=0, microsecond=0)
    decide_from = data.draw(
        st.one_of(
            st.sampled_from(times),
            st.integers(0, 210 * 86_400).map(lambda s: start + timedelta(seconds=s)),
        )
    )
    decided, run = replay(stream, decide_from)
    later = Counter({k: n for k, n in whole.items() if k[3] >= decide_from})
    assert decided == later
    assert run.warmed_up == sum(n for k, n in whole.items() if k[3] < decide_from)


def test_timers_armed_in_the_warm_up_fire_after_it(stream, whole: Counter[Key]) -> None:  # type: ignore[no-untyped-def]
    """Dormancy candidates after F of customers with no event after F: only the warm-up's
    state knows them, so a replay of the events after F alone misses them."""
    path, profiles, rules, until = stream
    decide_from = min(at for _, _, _, at in whole) + timedelta(days=130)
    decided, _ = replay(stream, decide_from)
    lines = path.read_bytes().splitlines()
    after = [
        line
        for line in lines
        if datetime.fromisoformat(orjson.loads(line)["occurred_at"]) >= decide_from
    ]
    later_only = path.with_name("later.jsonl")
    later_only.write_bytes(b"".join(line + b"\n" for line in after))
    alone, _ = replay((later_only, profiles, rules, until), None)
    quiet = {k for k in decided if k[0] == "gone-quiet"}
    assert quiet and not quiet <= set(alone)


@pytest.mark.parametrize("lateness", [None, "1h"], ids=["shared-batches", "each-side-alone"])
def test_compare_warms_up_both_sides(stream, whole: Counter[Key], lateness: str | None) -> None:  # type: ignore[no-untyped-def]
    """`replay_both` with `decide_from`: each side decides what its own replay with the
    warm-up decides, on both of its paths (one stamping for both sides, or one each
    when the engine settings differ)."""
    from keymoment.commands.compare import replay_both

    path, profiles, rules, until = stream
    other = rules
    if lateness is not None:
        data = rules.model_dump(mode="json", by_alias=True)
        data["engine"] = {**data.get("engine", {}), "allowed_lateness": lateness}
        other = RulesFile.model_validate(data)
    decide_from = min(k[3] for k in whole) + timedelta(days=60)
    both = replay_both(rules, other, profiles, [str(path)], until, decide_from=decide_from)
    sides = ((both.old, rules, both.warmed_up[0]), (both.new, other, both.warmed_up[1]))
    for records, side, warmed_up in sides:
        alone, run = replay((path, profiles, side, until), decide_from)
        assert keys(records) == alone and sum(alone.values()) > 50
        assert warmed_up == run.warmed_up > 0


JOURNEYS = RULES.with_name("journeys.yaml")  # its payroll-nudge follows up on payroll-package


@pytest.fixture(scope="module")
def journeys(stream) -> tuple[RulesFile, list[dict]]:  # type: ignore[no-untyped-def]
    """examples/journeys.yaml, and its whole replay's decision records with every candidate
    sent (`--policy off`): which offers are sent then depends on nothing but the rules."""
    path, profiles, _, until = stream
    rules = load_rules(JOURNEYS)
    run = Replay(rules, profiles, FirstChannelPolicy(rules), until=until)
    return rules, [r for out in run.outputs([str(path)]) for r in out.decision_records()]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_warm_up_fed_the_sent_offers_before_it_finds_every_later_follow_up(
    stream, journeys, data: st.DataObject
) -> None:  # type: ignore[no-untyped-def]
    """With a follow-up rule, F anywhere: a warm-up given the whole replay's sent offers
    before F (`--sent-log`) finds exactly the whole replay's candidates from F on, follow-ups
    of offers sent before F among them; without them it misses those follow-ups."""
    path, profiles, _, until = stream
    rules, records = journeys
    whole = keys(records)
    times = sorted({k[3] for k in whole if k[0] == "payroll-nudge"})
    decide_from = data.draw(st.sampled_from(times)) - timedelta(
        seconds=data.draw(st.integers(0, 3 * 86_400 - 1))
    )  # a cut in the 3 days before a follow-up: after its offer, so the offer is warm-up
    before = [r for r in records if datetime.fromisoformat(r["triggered_at"]) < decide_from]
    sent = sent_in_log(before, {"payroll-package"})

    def warm(log: Logged | None) -> tuple[Counter[Key], Replay]:
        run = Replay(rules, profiles, FirstChannelPolicy(rules), until=until,
                     decide_from=decide_from, warm_sent=log)  # fmt: skip
        return keys(r for out in run.outputs([str(path)]) for r in out.decision_records()), run

    later = Counter({k: n for k, n in whole.items() if k[3] >= decide_from})
    decided, run = warm(sent)
    assert decided == later
    assert run.fed_back == len(sent) and run.warmed_up == sum(whole.values()) - sum(later.values())
    offered = {r["offer_id"] for r in before if r["campaign_id"] == "payroll-package"}
    carried = {k for k in later if k[0] == "payroll-nudge" and k[2] in offered}
    assert carried
    missed, _ = warm(None)
    assert missed == Counter({k: n for k, n in later.items() if k not in carried})
