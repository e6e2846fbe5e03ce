"""MTEB evaluation: an mteb adapter for cft encoders, local-file tasks, suites, dev sets, and result reports."""

from cft.evaluation.dev_set import DevSet, load_dev_set
from cft.evaluation.local_tasks import LOCAL_FILES, local_task
from cft.evaluation.mteb_encoder import MTEB_INSTRUCTION, Encoder, MTEBEncoder
from cft.evaluation.report import default_output, format_table, publish_results, write_report
from cft.evaluation.runner import EvalRun, TaskSet, evaluate_encoder, main_score, prepare_tasks, summarize
from cft.evaluation.st_encoder import SentenceTransformerEncoder
from cft.evaluation.suites import SUITES, TaskSpec, resolve_tasks

__all__ = [
    "LOCAL_FILES",
    "MTEB_INSTRUCTION",
    "SUITES",
    "DevSet",
    "Encoder",
    "EvalRun",
    "MTEBEncoder",
    "SentenceTransformerEncoder",
    "TaskSet",
    "TaskSpec",
    "default_output",
    "evaluate_encoder",
    "format_table",
    "load_dev_set",
    "local_task",
    "main_score",
    "prepare_tasks",
    "publish_results",
    "resolve_tasks",
    "summarize",
    "write_report",
]
