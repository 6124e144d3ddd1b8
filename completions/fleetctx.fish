complete --keep-order --exclusive --command fleetctx --arguments "(FLEETCTX_COMPLETE=fish fleetctx -- (commandline --current-process --tokenize --cut-at-cursor) (commandline --current-token))"
