"""Routing: plan types and sizing, the rule-based planners, the ML planner."""
