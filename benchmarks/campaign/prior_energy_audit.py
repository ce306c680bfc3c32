"""Were any training labels of a campaign's Δ-models corrupted by the shared-prior race?

Before the fix in ``pesflow.models.delta.prior_energy_forces``, runs in one coordinator
shared a prior calculator while their Δ-models trained in background threads, so a prior
energy stored with a training structure could belong to another structure (or the training
crashed). This recomputes, for the newest saved model of every run under the given
directories, each training structure's prior energy with a private prior and reports the
runs whose stored values differ.

    .venv/bin/python benchmarks/campaign/prior_energy_audit.py runs/standins \
        runs/surface-standin runs/ag2s runs/standins-sitting6
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from pesflow.models.delta import DeltaModel, prior_energy_forces
from pesflow.models.priors import make_prior


def audit_run(run: Path, priors: dict) -> dict | None:
    """Largest |stored − recomputed| prior energy of ``run``'s newest model (None: no model)."""
    models = sorted((run / "models").glob("v*.h5"))
    config = yaml.safe_load((run / "run.yaml").read_text())
    if not models or not config.get("model", {}).get("delta", True):
        return None
    spec = config["prior"]
    if spec not in priors:
        priors[spec] = make_prior(spec)
    model = DeltaModel.load(models[-1], prior=priors[spec])
    stored = np.array(model._prior_energy)
    fresh = np.array([prior_energy_forces(priors[spec], a, forces=False)[0]
                      for a in model._structures])
    error = np.abs(stored - fresh)
    return {"run": str(run), "model": models[-1].name, "structures": len(stored),
            "max_error": float(error.max()), "wrong": int((error > 1e-6).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaigns", nargs="+", help="campaign directories (pesflow bench --out)")
    parser.add_argument("--out", default="benchmarks/campaign/prior-energy-audit.json")
    args = parser.parse_args()
    priors: dict = {}
    rows = []
    for campaign in args.campaigns:
        for run_yaml in sorted(Path(campaign).glob("**/run.yaml")):
            row = audit_run(run_yaml.parent, priors)
            if row is not None:
                rows.append(row)
                flag = "WRONG" if row["wrong"] else "ok"
                print(f"{flag:5s} {row['run']}: {row['wrong']} of {row['structures']} prior "
                      f"energies differ (max {row['max_error']:.3g} eV)")
    bad = [r for r in rows if r["wrong"]]
    print(f"{len(bad)} of {len(rows)} runs with Δ-models have wrong stored prior energies")
    Path(args.out).write_text(json.dumps({"runs": rows, "affected": len(bad)}, indent=1))


if __name__ == "__main__":
    main()
