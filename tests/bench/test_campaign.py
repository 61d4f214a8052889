"""The reference campaign (``bench.campaign``) and the best-known targets it gives the spin glass."""

import json
import shlex

import numpy as np
import pytest

import problems
from bench import campaign, cli, schema
from bench.runner import run_cell
from problems.base import BEST_KNOWN_PATH, relative_target
from problems.spin_glass import BEST_KNOWN_TAU, ground_state_energy, threshold_energy

TINY = "spin_glass(p=3,n=8)"
TINY_OPTS = {"sgd": {"learning_rate": 0.1}, "adam": {"learning_rate": 0.01}}


@pytest.fixture(scope="module")
def tiny():
    return campaign.run_campaign(TINY, optimizers=TINY_OPTS, restarts=5, steps=20, seed_base=1_000_000)


def test_campaign_best_is_the_minimum_over_the_runs_it_made(tiny):
    seeds = list(range(1_000_000, 1_000_005))
    assert tiny.seeds == seeds and tiny.problem == "spin_glass(p=3,n=8,instance=0)"
    finals = []
    for opt, hp in TINY_OPTS.items():
        df = run_cell(TINY, opt, hparams=hp, seeds=seeds, steps=20, log_every=20)
        per_seed = df.groupby(schema.SEED)[schema.FINAL_LOSS].first()
        np.testing.assert_array_equal(tiny.finals[opt], per_seed.loc[seeds].to_numpy())
        finals.append(per_seed.to_numpy())
    assert tiny.best == np.min(np.concatenate(finals))
    opt, seed = tiny.best_run
    assert tiny.finals[opt][seeds.index(seed)] == tiny.best
    rows = tiny.per_optimizer()
    assert min(r["best"] for r in rows.values()) == tiny.best
    assert tiny.quantiles()["0"] == tiny.best and tiny.quantiles()["1"] == np.max(np.concatenate(finals))
    assert "best known value f_ref" in tiny.table()


def test_campaign_seeds_are_disjoint_from_the_suites():
    from bench import suites

    top = max(max(c.seeds) for s in suites.names() for c in suites.get(s).cells())
    assert top < campaign.SEED_BASE


def test_write_best_known_records_provenance_in_the_given_file(tiny, tmp_path):
    path = tmp_path / "best_known.json"
    path.write_text(json.dumps({"other(x=1)": {"value": 1.0}}))
    rec = campaign.write_best_known(tiny, path)
    data = json.loads(path.read_text())
    assert data["other(x=1)"] == {"value": 1.0}  # other entries kept
    stored = data[tiny.problem]
    assert stored == rec
    assert stored["value"] == tiny.best  # exact round trip (json writes repr)
    for field in ("found_by", "method", "optimizers", "restarts", "steps", "seeds", "quantiles", "command",
                  "jax_version", "date", "fraction_at_best"):
        assert field in stored, field
    assert stored["restarts"] == 5 and stored["steps"] == 20 and stored["seeds"] == [1_000_000, 1_000_004]
    assert set(stored["optimizers"]) == set(TINY_OPTS)
    assert stored["optimizers"]["sgd"]["hparams"] == {"learning_rate": 0.1}
    # not the default optimizers: the command is the API call that reproduces the campaign
    argv = shlex.split(stored["command"])
    assert argv[:2] == ["python", "-c"] and len(argv) == 3
    compile(argv[2], "<command>", "exec")  # valid Python
    for part in ("run_campaign('spin_glass(p=3,n=8,instance=0)'", "restarts=5", "steps=20", "seed_base=1000000",
                 "'sgd': {'learning_rate': 0.1}"):
        assert part in argv[2], part


def test_cli_campaign_writes_to_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(campaign, "DEFAULT_OPTIMIZERS", {"sgd": {"learning_rate": 0.1}})
    path = tmp_path / "bk.json"
    rc = cli.main(["campaign", "--problems", TINY, "--restarts", "3", "--steps", "10", "--write",
                   "--path", str(path)])
    assert rc == 0
    assert "best known value" in capsys.readouterr().out
    stored = json.loads(path.read_text())["spin_glass(p=3,n=8,instance=0)"]
    assert stored["restarts"] == 3
    assert stored["command"] == ("python -m bench campaign --problems 'spin_glass(p=3,n=8,instance=0)' "
                                 "--restarts 3 --steps 10 --write")
    assert cli.main(["campaign", "--problems", "spin_glass(p=5)"]) == 2  # bad input: usage error


def test_cli_defaults_are_the_campaign_defaults():
    args = cli.parser().parse_args(["campaign", "--problems", "spin_glass"])
    assert (args.restarts, args.steps, args.seed_base) == (
        campaign.DEFAULT_RESTARTS, campaign.DEFAULT_STEPS, campaign.SEED_BASE)
    assert campaign.BEST_KNOWN_PATH == BEST_KNOWN_PATH


def test_spin_glass_n30_uses_the_shipped_best_known_value():
    name = "spin_glass(p=3,n=30,instance=0)"
    known = json.loads(BEST_KNOWN_PATH.read_text())[name]
    ref = problems.get(name).reference
    f_ref = known["value"]
    assert ref.f_star is None  # the instance's ground state is unknown
    assert ref.extra["best_known"] == f_ref
    assert ref.f_target == relative_target(f_ref, 0.0, BEST_KNOWN_TAU)
    assert f_ref < ref.f_target < 0.0
    assert all(f_ref <= q for q in known["quantiles"].values())
    assert all(f_ref <= row["best"] for row in known["optimizers"].values())
    # Plausible band: the instance's ground state per spin fluctuates around -E_0(3) = -1.657 by
    # O(N^{-2/3}) (~0.1 at N = 30) and can lie below it, and a campaign ends at or above the
    # ground state; far outside [-E_0 - 0.25, -E_inf + 0.25] = [-1.9, -1.4] would mean a bug
    # (wrong scaling of H, a diverged run counted), not a finite-size effect.
    assert -1.9 < f_ref < -1.4
    assert name in ref.source and "bench campaign" in ref.source


def test_spin_glass_without_a_best_known_value_keeps_the_threshold_target():
    ref = problems.get("spin_glass(p=3,n=12)").reference
    assert ref.f_target == -threshold_energy(3)
    assert ref.f_star == -ground_state_energy(3)
    assert "best_known" not in ref.extra
