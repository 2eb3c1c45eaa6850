"""The Textual front end: `sizer` in a terminal, `sizer serve` in a browser. It holds no trial
logic; it calls `sizer.core` and shows the events the core sends."""
