"""deploy/grafana/tickpipe.json is what tickpipe_dev.dashboard (grafana-foundation-sdk) builds."""

from __future__ import annotations

import json
from pathlib import Path

from tickpipe_dev import dashboard

ROOT = Path(__file__).resolve().parents[3]


def test_committed_dashboard_is_the_generated_one() -> None:
    assert (ROOT / dashboard.OUTPUT).read_text() == dashboard.render(), (
        "deploy/grafana/tickpipe.json is outdated or hand-edited: "
        "run `uv run python -m tickpipe_dev.dashboard`"
    )
    assert dashboard.main(["--check", "--root", str(ROOT)]) == 0


def test_check_fails_on_a_hand_edited_file(tmp_path: Path) -> None:
    (tmp_path / dashboard.OUTPUT).parent.mkdir(parents=True)
    (tmp_path / dashboard.OUTPUT).write_text(dashboard.render().replace("Ticks", "Tics"))
    assert dashboard.main(["--check", "--root", str(tmp_path)]) == 1
    assert dashboard.main(["--root", str(tmp_path)]) == 0
    assert dashboard.main(["--check", "--root", str(tmp_path)]) == 0


def test_panels_are_laid_out_and_queried_through_the_datasource_variable() -> None:
    data = json.loads(dashboard.render())
    panels = data["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    positions = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(set(positions)) == len(positions), "panels overlap"
    for p in panels:
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), p["title"]
    titles = {p["title"] for p in panels}
    assert {"Consumer lag by group", "Consumer lag by partition"} <= titles
