"""Reading a CRM: CSV, Parquet or DuckDB; funnel definitions; validation; snapshot imports.

Dependency rule: imports pandas, duckdb and funnel_lab.errors only; never the model, forecast,
charts or reports.
"""

from funnel_lab.crm.eventlog import CRM, ValidationReport
from funnel_lab.crm.funnel import Funnel
from funnel_lab.crm.maven import ImportResult, import_maven
from funnel_lab.crm.read import crm_from_frames, format_report, read_crm, stage_summary

__all__ = [
    "CRM",
    "Funnel",
    "ImportResult",
    "ValidationReport",
    "crm_from_frames",
    "format_report",
    "import_maven",
    "read_crm",
    "stage_summary",
]
