"""Planner policies: one small decision per file, run in the order listed in autoscaler.planner."""
