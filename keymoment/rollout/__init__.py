"""Live rollout: what changes between two rule versions, the audit trail, and the schedule.

- `diff`: two loaded rules files -> per-rule classification (what carries over);
- `audit`: one record per reload attempt, and the sink it goes to;
- `schedule`: the versions in force from which watermark on (`--rollout`, the audit log).
"""
