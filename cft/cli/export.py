"""`cft export`: an adapter -> a merged Hugging Face model and/or a sentence-transformers model."""

from __future__ import annotations

import argparse

from cft.cli.options import add_out


def register(subparsers: argparse._SubParsersAction) -> None:
    from cft.export.options import EXPORT_DTYPES, FORMATS

    parser = subparsers.add_parser(
        "export",
        help="merge an adapter into its base model; write Hugging Face and/or sentence-transformers folders",
        description="Merges the LoRA adapter into its base model and writes a Hugging Face model folder (hf) and/or\n"
                    "a sentence-transformers folder (st) whose encode() gives exactly cft's embeddings (its tokenizer\n"
                    "appends EOS; last-token or mean pooling; normalized). With --format both: DIR/hf and DIR/st.\n"
                    "The export is built next to DIR, checked against cft's own embeddings, then moved into place.",
        epilog="examples:\n"
               "  cft export --adapter cft-runs/runs/r1/adapter --out exported/r1\n"
               "  cft export --adapter s3://bucket/cft/runs/r1/adapter --out st-model --format st\n"
               "  cft export --adapter cft-runs/runs/r1/adapter --out st-256 --format st --dim 256\n"
               "  python -c \"from sentence_transformers import SentenceTransformer as S; "
               "print(S('st-model').encode(['hi']))\"",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--adapter", "-a", required=True,
                        help="adapter folder or s3:// URI (<bucket>/runs/<run_id>/adapter; a local run folder works too)")
    add_out(parser, metavar="DIR", help="folder to write (must be empty or absent, unless --force); required")
    parser.add_argument("--format", "-f", dest="fmt", choices=FORMATS, default="both",
                        help="hf: merged transformers model; st: sentence-transformers model; "
                             "both (default): DIR/hf and DIR/st")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--dtype", choices=EXPORT_DTYPES, default="auto",
                        help="dtype of the saved weights (default auto: the base checkpoint's own dtype)")
    parser.add_argument("--device", default=None, help="device for merging and checking (default: cuda if available)")
    parser.add_argument("--dim", type=int, default=None, metavar="N",
                        help="sentence-transformers truncate_dim: embeddings keep their first N dimensions (for an "
                             "adapter trained with loss.matryoshka_dims); st and both formats only")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip checking the exported models' embeddings against cft's (faster for big models)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cft.errors import CFTError

    if not args.out:
        raise CFTError("cft export needs --out DIR, the folder to write (e.g. --out exported/<run_id>)")
    from cft.export import export_adapter
    from cft.modeling.encoder import resolve_device

    args.device = str(resolve_device(args.device)) if args.device else None
    result = export_adapter(args.adapter, args.out, fmt=args.fmt, force=args.force, dtype=args.dtype,
                            device=args.device, verify=args.verify, dim=args.dim)
    for name, folder in (("hf", result.hf_dir), ("st", result.st_dir)):
        if folder is None:
            continue
        check = result.checks.get(name)
        checked = (f"matches cft (max |diff| {check['max_abs_diff']:.1e})" if check else "not checked")
        what = "merged Hugging Face model" if name == "hf" else "sentence-transformers model"
        print(f"{what}: {folder}  [{result.dtype}, {checked}]")
    return 0
