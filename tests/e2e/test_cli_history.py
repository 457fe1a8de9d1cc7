"""`backtest --history` and `compare --history` against a history a real `keymoment run` wrote.

The live side: `keymoment run --clock event --state redis://...` on the first month
of a generated stream. The backtest of the second month on a copy of that history
must decide every candidate exactly as one backtest of both months does (the rule
is per event, so both find the same candidates; only the caps carry over), where
the same backtest without the history sends offers the weekly cap would refuse.
Nothing is written to the live store.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis

from keymoment.connectors.generator import Generator
from tests.support.cli import keymoment

# A large deposit by amount alone (no customer has 100,000 earlier credits), capped weekly.
RULES = """\
version: 1
timezone: Asia/Shanghai
currency: CNY
rules:
  - {rule_id: big-deposit, trigger: large_deposit, campaign: wealth-welcome, min_amount: 2000,
     multiple: 5, min_history: 100000, lookback: 1d, kinds: [cash_deposit, transfer_in, payroll]}
campaigns:
  - {campaign_id: wealth-welcome, offer_code: WM-DEP-01, channels: [app_push, sms],
     priority: 50, value: 120.0, ttl: 24h, holdout: 0.1, lists: [vip-opt-out]}
channels:
  sms: {}
  app_push: {}
caps:
  - {id: weekly-any, scope: customer, limit: 1, window: 7d}
lists:
  vip-opt-out: vip-opt-out.txt   # empty: the test's ids are in Redis only
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("history")
    gen = Generator(seed=3, customers=400, start_at=datetime(2026, 1, 1, tzinfo=UTC), days=60)
    cut = (gen.start_at + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    lines = list(gen.iter_bytes())
    first = [b for b in lines if orjson.loads(b)["occurred_at"] < cut]
    files = {"rules": out / "rules.yaml", "all": out / "all.jsonl", "customers": out / "c.jsonl"}
    files |= {"first": out / "first.jsonl", "second": out / "second.jsonl"}
    files["rules"].write_text(RULES)
    (out / "vip-opt-out.txt").write_text("")
    files["all"].write_bytes(b"".join(b + b"\n" for b in lines))
    files["first"].write_bytes(b"".join(b + b"\n" for b in first))
    files["second"].write_bytes(b"".join(b + b"\n" for b in lines[len(first) :]))
    files["customers"].write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in gen.profiles()))
    return files


def outcomes(path: Path) -> dict[str, tuple]:
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return {r["offer_id"]: (r["outcome"], r["reason"], r.get("channel")) for r in records}


def backtest(data: dict[str, Path], events: Path, out: Path, *more: object) -> dict[str, tuple]:
    result = keymoment(
        "backtest", "--rules", data["rules"], "--events", events, "--customers",
        data["customers"], "--decisions", out, *more,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return outcomes(out)


def test_a_backtest_on_the_live_history_decides_as_if_it_had_seen_it(
    data: dict[str, Path], fresh_redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    live_log = tmp_path / "live.jsonl"
    subprocess.run(
        [sys.executable, "-m", "keymoment", "run", "--rules", str(data["rules"]),
         "--source", f"file:{data['first']}", "--customers", f"file:{data['customers']}",
         "--clock", "event", "--state", fresh_redis.url, "--decisions", f"file:{live_log}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    client = redis.Redis.from_url(fresh_redis.url)
    stored = {k: client.dump(k) for k in client.scan_iter(match="*")}
    whole = backtest(data, data["all"], tmp_path / "whole.jsonl")
    live = outcomes(live_log)
    assert live and all(whole[k] == v for k, v in live.items())  # the run decided as replayed

    on_history = backtest(
        data, data["second"], tmp_path / "on-history.jsonl", "--history", fresh_redis.url
    )
    alone = backtest(data, data["second"], tmp_path / "alone.jsonl")
    assert on_history.keys() == alone.keys() and len(on_history) > 100
    assert on_history == {k: whole[k] for k in on_history}
    capped = [k for k in alone if alone[k][0] == "sent" and whole[k][1] == "weekly-any"]
    assert capped  # without the history the second month sends what the weekly cap refuses
    assert {k: client.dump(k) for k in client.scan_iter(match="*")} == stored  # not written

    compared = keymoment(
        "compare", "--rules", data["rules"], "--rules", data["rules"], "--events",
        data["second"], "--customers", data["customers"], "--history", fresh_redis.url,
        "--json", tmp_path / "compare.json",
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    assert compared.stderr.startswith("history: copied ")
    result = orjson.loads((tmp_path / "compare.json").read_bytes())
    assert result["history"]["offers"] == sum(1 for v in live.values() if v[0] == "sent")
    assert result["history"]["source"].endswith(" prefix km")
    sides = result["sides"]
    sent = sum(1 for v in on_history.values() if v[0] == "sent")
    assert sides["old"]["funnel"]["sent"] == sides["new"]["funnel"]["sent"] == sent


def test_suppression_sets_in_redis_are_copied_with_lists_1(
    data: dict[str, Path], fresh_redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A set the URL does not read is refused in one line; with lists=1 it suppresses."""
    alone = backtest(data, data["second"], tmp_path / "alone.jsonl")
    sent = sorted({k for k, v in alone.items() if v[0] == "sent"})
    records = [orjson.loads(line) for line in (tmp_path / "alone.jsonl").read_bytes().splitlines()]
    customer = next(r["customer_id"] for r in records if r["offer_id"] == sent[0])
    redis.Redis.from_url(fresh_redis.url).sadd("km:list:vip-opt-out", customer)
    refused = keymoment(
        "backtest", "--rules", data["rules"], "--events", data["second"],
        "--decisions", tmp_path / "x.jsonl", "--history", fresh_redis.url,
    )  # fmt: skip
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "lists=1" in refused.stderr and "Traceback" not in refused.stderr
    listed = backtest(
        data, data["second"], tmp_path / "listed.jsonl", "--history", f"{fresh_redis.url}?lists=1"
    )
    assert listed[sent[0]] == ("suppressed", "vip-opt-out", None)


# The same, with a dormancy rule on the same weekly cap: its timers are armed by the first
# month's events and many come due in the second.
TIMER_RULES = RULES.replace(
    "campaigns:\n",
    "  - {rule_id: gone-quiet, trigger: dormancy, campaign: win-back, inactive: 20d}\n"
    "campaigns:\n"
    "  - {campaign_id: win-back, offer_code: WB-SMS-03, channels: [sms, app_push],\n"
    "     priority: 40, value: 30.0, ttl: 24h}\n",
)


def triggered(path: Path) -> dict[str, datetime]:
    records = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return {r["offer_id"]: datetime.fromisoformat(r["triggered_at"]) for r in records}


def live_until_cut(
    data: dict[str, Path], rules_text: str, tmp_path: Path, store: str
) -> tuple[dict[str, Path], str, Path]:
    """`rules_text` as the files' rules, the cut (the second month's first event), and the
    decision log of a live `keymoment run` of the first month up to the cut on `store`."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_text)
    (tmp_path / "vip-opt-out.txt").write_text("")
    cut = min(
        orjson.loads(line)["occurred_at"] for line in data["second"].read_bytes().splitlines()
    )
    live_log = tmp_path / "live.jsonl"
    subprocess.run(
        [sys.executable, "-m", "keymoment", "run", "--rules", str(rules),
         "--source", f"file:{data['first']}", "--customers", f"file:{data['customers']}",
         "--clock", "event", "--until", cut, "--state", store,
         "--decisions", f"file:{live_log}"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return {**data, "rules": rules}, cut, live_log


def test_a_warm_up_on_the_live_history_decides_the_second_month_as_one_backtest(
    data: dict[str, Path], fresh_redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """`--from` the cut over both months, on the history the live run wrote in the first:
    every candidate from the cut on, dormancy timers armed before it among them, is
    decided as the backtest of both months decides it (the run stops at the cut with
    `--until`, so it decided every timer due by then)."""
    timers, cut, _ = live_until_cut(data, TIMER_RULES, tmp_path, fresh_redis.url)
    rules = timers["rules"]
    whole = backtest(timers, data["all"], tmp_path / "whole.jsonl")
    at, start = triggered(tmp_path / "whole.jsonl"), datetime.fromisoformat(cut)
    result = keymoment(
        "backtest", "--rules", rules, "--events", data["all"], "--customers", data["customers"],
        "--decisions", tmp_path / "warm.jsonl", "--history", fresh_redis.url, "--from", cut,
        "--json", tmp_path / "warm.json", "--html", tmp_path / "warm.html",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warm = outcomes(tmp_path / "warm.jsonl")
    assert warm == {k: v for k, v in whole.items() if at[k] >= start}
    before = sum(1 for k in whole if at[k] < start)
    assert f"{before:,} candidates they triggered were not decided" in result.stdout
    summary = orjson.loads((tmp_path / "warm.json").read_bytes())
    assert summary["warm_up"] == {"from": cut, "candidates": before}
    assert f"the {before:,} candidates they triggered" in (tmp_path / "warm.html").read_text()
    # without the history the warm-up's offers were never reserved: the cap lets more through
    fresh = backtest(timers, data["all"], tmp_path / "fresh.jsonl", "--from", cut)
    assert fresh.keys() == warm.keys()
    assert [k for k in fresh if fresh[k][0] == "sent" and warm[k][1] == "weekly-any"]
    # the second month alone knows no customer quiet since the first: its dormancy differs
    alone = backtest(timers, data["second"], tmp_path / "alone.jsonl", "--history", fresh_redis.url)
    records = [orjson.loads(line) for line in (tmp_path / "warm.jsonl").read_bytes().splitlines()]
    quiet = {r["offer_id"] for r in records if r["rule_id"] == "gone-quiet"}
    assert quiet and not quiet <= alone.keys()

    compared = keymoment(
        "compare", "--rules", rules, "--rules", data["rules"], "--events", data["all"],
        "--customers", data["customers"], "--history", fresh_redis.url, "--from", cut,
        "--json", tmp_path / "compare.json",
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    sides = orjson.loads((tmp_path / "compare.json").read_bytes())
    assert sides["input"]["warm_up"]["old"] == {"from": cut, "candidates": before}
    sent = sum(1 for v in warm.values() if v[0] == "sent")
    assert sides["sides"]["old"]["funnel"]["sent"] == sent
    assert "(--from) built the rules' state" in compared.stdout


def test_from_after_until_is_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    result = keymoment(
        "backtest", "--rules", data["rules"], "--events", data["all"], "--decisions",
        tmp_path / "x.jsonl", "--from", "2026-03-01T00:00:00Z", "--until", "2026-02-01T00:00:00Z",
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "--from is after --until" in result.stderr


@pytest.mark.parametrize(
    ("more", "says"),
    [
        (["--history", "redis://127.0.0.1:1/0?timeout=0.2"], "--history: redis unreachable"),
        (["--history", "memory:"], "--history takes the live cap store's redis:// URL"),
        (["--history", "redis://127.0.0.1:1/0", "--state", "memory:"], "leave --state"),
        (["--history", "redis://127.0.0.1:1/0", "--policy", "off"], "--policy off out"),
    ],
)
def test_mistakes_get_one_line(data: dict[str, Path], tmp_path: Path, more, says) -> None:  # type: ignore[no-untyped-def]
    result = keymoment(
        "backtest", "--rules", data["rules"], "--events", data["second"],
        "--decisions", tmp_path / "x.jsonl", *more,
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


# The first rule's offers get a second touch 3 days on: a follow-up of offers sent before the cut
# comes due after it.
FOLLOW_RULES = TIMER_RULES.replace(
    "campaigns:\n",
    "  - {rule_id: second-touch, trigger: follow_up, campaign: second-touch,\n"
    "     after: {campaign: wealth-welcome, outcome: sent}, within: 3d}\n"
    "campaigns:\n"
    "  - {campaign_id: second-touch, offer_code: WM-DEP-02, channels: [app_push],\n"
    "     priority: 10, value: 10.0, ttl: 24h}\n",
)


def test_a_warm_up_feeds_back_the_live_logs_sent_offers_so_follow_ups_fire_after_it(
    data: dict[str, Path], fresh_redis, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """With `--sent-log` the live run's own decision log: the offers it sent before the cut
    go back to the engine in the warm-up, so every candidate from the cut on, follow-ups
    of offers sent before it among them, is decided as one backtest of both months does.
    Without it those follow-ups are missing, and nothing else changes."""
    follow, cut, live_log = live_until_cut(data, FOLLOW_RULES, tmp_path, fresh_redis.url)
    rules = follow["rules"]
    whole = backtest(follow, data["all"], tmp_path / "whole.jsonl")
    at, start = triggered(tmp_path / "whole.jsonl"), datetime.fromisoformat(cut)
    later = {k: v for k, v in whole.items() if at[k] >= start}
    records = [orjson.loads(line) for line in (tmp_path / "whole.jsonl").read_bytes().splitlines()]
    offered_before = {r["offer_id"] for r in records if at[r["offer_id"]] < start}
    carried = {  # follow-ups from the cut on of offers sent before it
        r["offer_id"] for r in records
        if r["rule_id"] == "second-touch" and at[r["offer_id"]] >= start
        and r["event_id"] in offered_before
    }  # fmt: skip
    assert carried, "no follow-up crosses the cut: the test shows nothing"
    result = keymoment(
        "backtest", "--rules", rules, "--events", data["all"], "--customers", data["customers"],
        "--decisions", tmp_path / "warm.jsonl", "--history", fresh_redis.url, "--from", cut,
        "--sent-log", live_log, "--json", tmp_path / "warm.json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert outcomes(tmp_path / "warm.jsonl") == later
    live_sent = [orjson.loads(line) for line in live_log.read_bytes().splitlines()]
    fed = sum(r["outcome"] == "sent" and r["campaign_id"] == "wealth-welcome" for r in live_sent)
    assert orjson.loads((tmp_path / "warm.json").read_bytes())["warm_up"]["sent_fed_back"] == fed
    assert f"of which {fed:,} the live log sent (fed back: --sent-log)" in result.stdout
    without = backtest(
        follow, data["all"], tmp_path / "without.jsonl", "--history", fresh_redis.url,
        "--from", cut,
    )  # fmt: skip
    assert without == {k: v for k, v in later.items() if k not in carried}

    compared = keymoment(
        "compare", "--rules", rules, "--rules", rules, "--events", data["all"],
        "--customers", data["customers"], "--history", fresh_redis.url, "--from", cut,
        "--sent-log", live_log, "--json", tmp_path / "compare.json",
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    sides = orjson.loads((tmp_path / "compare.json").read_bytes())
    assert sides["input"]["warm_up"]["new"]["sent_fed_back"] == fed
    sent = sum(1 for v in later.values() if v[0] == "sent")
    assert sides["sides"]["new"]["funnel"]["sent"] == sent


@pytest.mark.parametrize(
    ("more", "says"),
    [
        (["--sent-log", "LOG"], "give --from too"),
        (["--sent-log", "LOG", "--from", "2026-01-20T00:00:00Z"], "no follow_up rule"),
        (["--sent-log", "MISSING", "--from", "2026-01-20T00:00:00Z"], "--sent-log: cannot read"),
    ],
)
def test_sent_log_mistakes_get_one_line(data: dict[str, Path], tmp_path: Path, more, says) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "log.jsonl"
    log.write_text("")
    rules = data["rules"]
    if "cannot read" in says:  # with a follow-up rule, so the file is read
        rules = tmp_path / "rules.yaml"
        rules.write_text(FOLLOW_RULES)
        (tmp_path / "vip-opt-out.txt").write_text("")
    more = [str(log) if m == "LOG" else str(tmp_path / "missing.jsonl") if m == "MISSING" else m
            for m in more]  # fmt: skip
    result = keymoment(
        "backtest", "--rules", rules, "--events", data["second"],
        "--decisions", tmp_path / "x.jsonl", *more,
    )  # fmt: skip
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
