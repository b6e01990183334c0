"""Reading a CRM: CSV, Parquet or DuckDB; funnel definitions; validation; snapshot imports.

Dependency rule: imports pandas, duckdb and funnel_lab.errors only; never the model, forecast,
charts or reports.
"""

from funnel_lab.crm.eventlog import CRM, ValidationReport
from funnel_lab.crm.funnel import Funnel

__all__ = ["CRM", "Funnel", "ValidationReport"]
