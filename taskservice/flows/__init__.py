"""The flow engine: advances executions when their steps end, their timers come due, or they are started, stopped
or redriven (design §7). See `engine` for the process and `interpreter` for what one advance does."""
