"""``pesflow pes``: symmetry-restricted 2D PES slices (s2DPES).

Four forms::

    pesflow pes STRUCTURE --list-dofs                 # Wyckoff orbits and DOF names
    pesflow pes STRUCTURE --dof W1.x --dof W1.z --steps 50 --model chgnet --out DIR
    pesflow pes --config slice.yaml --out DIR         # the same settings from YAML
    pesflow pes --label A3B2_oP20_62_3c_2c:N-W --model chgnet --write W2N3.cif

DOF names are ``<element><n>.<x|y|z>`` as ``--list-dofs`` prints them: orbit n of that
element (numbered per element in order of Wyckoff letter), coordinate x, y or z of the
Wyckoff position's first coordinate triplet. Values are fractional coordinates.

Besides registry names, ``--model`` takes a search run directory (``pesflow run ... --out
RUN_DIR``): ``delta:RUN_DIR`` is its Δ-corrected model (the checkpoint's version;
``delta:RUN_DIR@3`` picks models/v00003.h5), with its uncertainty σ mapped in
``uncertainty.png``; ``prior:RUN_DIR`` is the run's prior alone::

    pesflow pes CIF --dof Cu1.x --dof Au1.z --model prior:RUN --model delta:RUN \
        --reference-model prior:RUN --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys

from pesflow.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pes", help="symmetry-restricted 2D PES slices (s2DPES) of a crystal",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("structure", nargs="?", help="crystal structure file (CIF, POSCAR, ...)")
    parser.add_argument("--list-dofs", action="store_true",
                        help="print space group, protostructure label, Wyckoff orbits and DOFs")
    parser.add_argument("--config", metavar="YAML", help="slice settings from a YAML file")
    parser.add_argument("--dof", action="append", metavar="NAME", help="a DOF to vary (twice)")
    parser.add_argument("--range", action="append", nargs=2, type=float, metavar=("START", "STOP"),
                        help="values of a DOF, inclusive (once per --dof; default 0 1)")
    parser.add_argument("--steps", nargs="+", type=int, metavar="N",
                        help="grid points per DOF (one value or two; default 50)")
    parser.add_argument("--model", action="append", metavar="NAME",
                        help="model (repeatable): chgnet, sevennet-0, mace:PATH, emt, ...; "
                        "delta:RUN_DIR[@VERSION] or prior:RUN_DIR for a search run's "
                        "Δ-corrected model or its prior")
    parser.add_argument("--out", metavar="DIR", help="slice directory (resumed if it exists)")
    parser.add_argument("--reference-model", metavar="NAME",
                        help="model for difference maps and the MAE column")
    parser.add_argument("--shared-scale", action="store_true",
                        help="one colour scale for all panels")
    parser.add_argument("--symprec", type=float, help="spglib tolerance in Å (default 1e-3)")
    parser.add_argument("--radius-scale", type=float,
                        help="D_min = scale · (r_i + r_j), Wigner–Seitz radii (default 0.35)")
    parser.add_argument("--radius", action="append", metavar="EL=R",
                        help="radius of an element in Å, e.g. N=0.556")
    parser.add_argument("--dmin", action="append", metavar="A-B=D",
                        help="D_min of a pair in Å, e.g. N-W=1.647")
    parser.add_argument("--chunk-points", type=int, help="grid points per resumable chunk (250)")
    parser.add_argument("--batch-atoms", type=int,
                        help="atoms per inference batch (default 100; more on GPU)")
    parser.add_argument("--memory-mb", type=int, help="memory bound of a cost chunk (256)")
    parser.add_argument("--device", help="torch device for models: cpu, cuda, auto (default)")
    parser.add_argument("--site", metavar="YAML",
                        help="evaluate chunks through Parsl on this site's 'gpu' executor")
    parser.add_argument("--dft-grid", type=int, metavar="N",
                        help="GPAW reference on an N×N sub-grid (cost-free points; small cells)")
    parser.add_argument("--dft-settings", help="GPAW settings preset for --dft-grid (fast)")
    parser.add_argument("--dft-ranks", type=int, help="MPI ranks per GPAW single point (1)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--label", help="build a structure from a protostructure label")
    parser.add_argument("--cellpar", nargs=6, type=float, metavar="P",
                        help="with --label: a b c alpha beta gamma (default: a guess, relaxed)")
    parser.add_argument("--seed", type=int, default=0, help="with --label: seed for random DOFs")
    parser.add_argument("--write", metavar="FILE",
                        help="with --label: where to write the structure")
    parser.set_defaults(func=run)


def _pairs(items: list[str] | None, what: str) -> dict[str, float]:
    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        try:
            if not eq:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"cannot read --{what} {item!r}; write KEY=VALUE, "
                             f"e.g. {'N=0.556' if what == 'radius' else 'N-W=1.647'}") from None
    return out


def _config(args: argparse.Namespace):
    from pesflow.pes.slices import SliceConfig

    if args.config:
        config = SliceConfig.from_yaml(args.config)
        data = config.model_dump()
    else:
        if not args.structure:
            raise InputError("give a STRUCTURE file, --config YAML or --label LABEL")
        if not args.dof or len(args.dof) != 2:
            raise InputError("a slice needs exactly two --dof NAME options (names from "
                             "`pesflow pes STRUCTURE --list-dofs`)")
        data = {"structure": args.structure, "dofs": args.dof}
    overrides = {
        "structure": args.structure if args.config and args.structure else None,
        "ranges": [tuple(r) for r in args.range] if args.range else None,
        "steps": (args.steps[0] if len(args.steps) == 1 else args.steps) if args.steps else None,
        "models": args.model, "reference_model": args.reference_model,
        "symprec": args.symprec, "radius_scale": args.radius_scale,
        "radii": _pairs(args.radius, "radius") or None, "dmin": _pairs(args.dmin, "dmin") or None,
        "chunk_points": args.chunk_points, "batch_atoms": args.batch_atoms,
        "memory_mb": args.memory_mb, "device": args.device,
        "shared_scale": args.shared_scale or None, "dft_grid": args.dft_grid,
        "dft_settings": args.dft_settings, "dft_ranks": args.dft_ranks,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    from pydantic import ValidationError

    try:
        return SliceConfig(**data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"])) or "settings"
        if first["type"] == "extra_forbidden":
            raise InputError(f"unknown setting {where!r} (allowed: "
                             f"{', '.join(SliceConfig.model_fields)})") from None
        raise InputError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _list_dofs(args: argparse.Namespace) -> int:
    from pesflow.pes.symmetry import analyze, read_structure

    analysis = analyze(read_structure(args.structure), symprec=args.symprec or 1e-3)
    if args.json:
        print(json.dumps({"label": analysis.label, "spacegroup": analysis.spacegroup,
                          "international": analysis.international,
                          "hall_number": analysis.hall_number, "natoms": len(analysis.atoms),
                          "orbits": analysis.table()}, indent=2))
        return 0
    print(f"{args.structure}: {analysis.atoms.get_chemical_formula()} (standardized, "
          f"{len(analysis.atoms)} atoms), space group {analysis.international} "
          f"({analysis.spacegroup}), Hall {analysis.hall_number}")
    print(f"protostructure label: {analysis.label}")
    print(f"{'orbit':<7}{'Wyckoff':<9}{'site':<8}{'generator':<22}DOFs (reference values)")
    for row in analysis.table():
        dofs = "  ".join(f"{k}={v:.5f}" for k, v in row["dofs"].items()) or "(fixed)"
        print(f"{row['orbit']:<7}{row['wyckoff']:<9}{row['site_symmetry']:<8}"
              f"{row['generator']:<22}{dofs}")
    return 0


def _from_label(args: argparse.Namespace) -> int:
    import numpy as np

    from pesflow.models.registry import check_model, get_calculator
    from pesflow.pes.energies import parse_run_model
    from pesflow.pes.labels import build_from_label, relax_symmetric
    from pesflow.pes.symmetry import analyze

    if not args.write:
        raise InputError("--label needs --write FILE for the structure")
    models = args.model or []
    if len(models) > 1:
        raise InputError("--label relaxes in one model: give at most one --model")
    for name in models:
        if parse_run_model(name) is not None:
            raise InputError(f"--label relaxes the cell, which needs stresses; {name!r} is a "
                             "search run's model (energies for slices): give a registry model")
        check_model(name)
    atoms = build_from_label(args.label, args.cellpar, rng=np.random.default_rng(args.seed))
    if models:
        atoms = relax_symmetric(atoms, get_calculator(models[0], device=args.device or "auto"))
    analysis = analyze(atoms, symprec=args.symprec or 1e-3)
    atoms.write(args.write)
    result = {"written": args.write, "label": analysis.label,
              "model": models[0] if models else None,
              "energy_per_atom": atoms.info.get("energy_per_atom"),
              "cellpar": atoms.cell.cellpar().round(5).tolist()}
    print(json.dumps(result, indent=2) if args.json else
          f"wrote {args.write}: {analysis.label}, cell {result['cellpar']}"
          + (f", {result['energy_per_atom']:.4f} eV/atom in {models[0]}" if models else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.label:
        return _from_label(args)
    if args.list_dofs:
        if not args.structure:
            raise InputError("--list-dofs needs a STRUCTURE file")
        return _list_dofs(args)
    config = _config(args)
    if not args.out:
        raise InputError("give --out DIR for the slice's data and plots")
    if args.site:
        from pesflow.pes.run import check_models
        from pesflow.workflows.pes import run_slice_on_site

        check_models(config, args.out)  # run_slice checks them itself
        data, table = run_slice_on_site(config, args.out, args.site, plot=not args.no_plot)
    else:
        from pesflow.pes.run import run_slice

        def progress(model: str, index: int) -> None:
            print(f"  {model}: chunk {index} done", file=sys.stderr, flush=True)

        data, table = run_slice(config, args.out, plot=not args.no_plot, progress=progress)
    if args.json:
        print(json.dumps({"out": args.out, "label": data.meta.get("label"),
                          "dofs": list(data.dofs), "models": table}, indent=2))
    else:
        from pesflow.pes.metrics import format_table

        print(f"{data.meta.get('label')}: {data.dofs[0]} × {data.dofs[1]}, "
              f"grid {data.cost.shape[0]}×{data.cost.shape[1]}, "
              f"cost at reference {data.meta.get('cost_at_reference', 0):.3g} Å; "
              f"results in {args.out}")
        print(format_table(table))
    return 0
