"""Report: evaluation, tables of runs and Plotly figures, all as pure functions of records.

It sits below training (which evaluates its model) and the pages (which render what it builds).
"""
