"""Built-in handlers, one module each; deploy them with e.g. `--handler workers.handlers.sleep:handler`."""
