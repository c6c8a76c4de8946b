"""The operator's admin API (``server``: HTTP on its own thread, commands
handed to the engine as events through the driver) and its client
(``client``: ``sor ctl``)."""
