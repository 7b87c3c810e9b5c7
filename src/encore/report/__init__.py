"""Figures and tables from run directories: one style, display names, LaTeX/Markdown tables, plots."""
