"""`cft export`: an adapter -> a merged Hugging Face model and/or a sentence-transformers model."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cft.cli.options import add_out

if TYPE_CHECKING:
    from cft.export.exporter import ExportResult
    from cft.export.hub import PushPlan


def register(subparsers: argparse._SubParsersAction) -> None:
    from cft.export.options import EXPORT_DTYPES, FORMATS

    parser = subparsers.add_parser(
        "export",
        help="merge an adapter into its base model; write Hugging Face and/or sentence-transformers folders",
        description="Merges the LoRA adapter into its base model and writes a Hugging Face model folder (hf) and/or\n"
                    "a sentence-transformers folder (st) whose encode() gives exactly cft's embeddings (its tokenizer\n"
                    "appends EOS; last-token or mean pooling; normalized). With --format both: DIR/hf and DIR/st.\n"
                    "The export is built next to DIR, checked against cft's own embeddings, then moved into place.\n"
                    "Every folder gets a model card (README.md: Hub metadata with the run's MTEB scores, usage, training).\n"
                    "--push-to-hub OWNER/NAME then uploads it in one commit (token: HF_TOKEN); the repository root is\n"
                    "the sentence-transformers folder (also loadable with AutoModel), or the merged model with --format hf.",
        epilog="examples:\n"
               "  cft export --adapter cft-runs/runs/r1/adapter --out exported/r1\n"
               "  cft export --adapter s3://bucket/cft/runs/r1/adapter --out st-model --format st\n"
               "  cft export --adapter cft-runs/runs/r1/adapter --out st-256 --format st --dim 256\n"
               "  HF_TOKEN=hf_... cft export --adapter cft-runs/runs/r1 --out exported/r1 --push-to-hub you/r1 "
               "--with-adapter\n"
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
    parser.add_argument("--force", action="store_true",
                        help="replace a non-empty --out folder, and the files on an existing Hub repository's main")
    parser.add_argument("--dtype", choices=EXPORT_DTYPES, default="auto",
                        help="dtype of the saved weights (default auto: the base checkpoint's own dtype)")
    parser.add_argument("--device", default=None, help="device for merging and checking (default: cuda if available)")
    parser.add_argument("--dim", type=int, default=None, metavar="N",
                        help="sentence-transformers truncate_dim: embeddings keep their first N dimensions (for an "
                             "adapter trained with loss.matryoshka_dims); st and both formats only")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip checking the exported models' embeddings against cft's (faster for big models)")
    hub = parser.add_argument_group("publishing on the Hugging Face Hub")
    hub.add_argument("--push-to-hub", metavar="OWNER/NAME", dest="push_to_hub",
                     help="upload the export (one commit; token from HF_TOKEN); refuses an existing repository's main "
                          "that holds files unless --force")
    hub.add_argument("--private", action="store_true", help="create the repository private (an existing one is unchanged)")
    hub.add_argument("--revision", metavar="BRANCH", help="push to this branch (created from main if absent)")
    hub.add_argument("--with-adapter", action="store_true",
                     help="also upload the bare PEFT adapter, under adapter/, with its own card")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cft.errors import CFTError

    if not args.out:
        raise CFTError("cft export needs --out DIR, the folder to write (e.g. --out exported/<run_id>)")
    if not args.push_to_hub:
        given = [flag for flag, value in (("--private", args.private), ("--revision", args.revision),
                                          ("--with-adapter", args.with_adapter)) if value]
        if given:
            raise CFTError(f"{', '.join(given)} go{'es' if len(given) == 1 else ''} with --push-to-hub OWNER/NAME")
    plan = None
    if args.push_to_hub:  # refusals (bad id, no token, a repository's main in the way) before the export's work
        from cft.export.hub import plan_push

        plan = plan_push(args.push_to_hub, args.revision, args.private, args.force)

    from cft.export import export_adapter
    from cft.modeling.encoder import resolve_device

    args.device = str(resolve_device(args.device)) if args.device else None
    result = export_adapter(args.adapter, args.out, fmt=args.fmt, force=args.force, dtype=args.dtype,
                            device=args.device, verify=args.verify, dim=args.dim,
                            repo_id=args.push_to_hub)
    for name, folder in (("hf", result.hf_dir), ("st", result.st_dir)):
        if folder is None:
            continue
        check = result.checks.get(name)
        checked = (f"matches cft (max |diff| {check['max_abs_diff']:.1e})" if check else "not checked")
        what = "merged Hugging Face model" if name == "hf" else "sentence-transformers model"
        print(f"{what}: {folder}  [{result.dtype}, {checked}]")
    if plan is not None:
        _push(args, plan, result)
    return 0


def _push(args: argparse.Namespace, plan: PushPlan, result: ExportResult) -> None:
    """The export folder at the repository root (sentence-transformers when there is one), the adapter if asked."""
    from cft.export.hub import adapter_upload, export_files, push
    from cft.export.options import pushed_format

    for note in plan.notes:
        print(f"note: {note}")
    root = result.st_dir if pushed_format(args.fmt) == "st" else result.hf_dir
    assert root is not None and result.adapter_dir is not None
    adapter = (adapter_upload(result.adapter_dir, result.metadata, result.record, args.push_to_hub)
               if args.with_adapter else None)
    run_id = result.record.run_id if result.record else None
    message = f"cft export of run {run_id}" if run_id else "cft export"
    pushed = push(plan, export_files(root, adapter), message, f"Exported by cft from {args.adapter} ({result.dtype}).")
    deleted = f", {len(pushed.deleted)} old files deleted" if pushed.deleted else ""
    print(f"pushed to {pushed.repo_id} ({pushed.revision}): {len(pushed.uploaded)} files in one commit{deleted}: "
          f"{pushed.commit_url}")
