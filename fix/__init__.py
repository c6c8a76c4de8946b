"""Everything that touches quickfix."""
