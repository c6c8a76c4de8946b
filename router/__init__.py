"""SOR: the routing service."""
