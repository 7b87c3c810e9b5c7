"""Preference pairs in, tidy tables out: hub and file readers, the embedded demo set, datasets that ship labels."""
