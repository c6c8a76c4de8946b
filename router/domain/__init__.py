"""The domain: value types, events, commands, order state machines and the
routing decision. Plain data; imports nothing of ours."""
