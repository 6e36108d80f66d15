"""Usage recording and reports."""
