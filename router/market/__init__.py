"""Live market state: the book and trade rings and how a feed update is applied to them."""
