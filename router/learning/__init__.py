"""What the router learns from its own outcomes while it runs: venue statistics
(fill rate, time to fill, markouts); later the online learners."""
