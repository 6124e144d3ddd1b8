
set edit:completion:arg-completer[fleetctx] = { |@words|
    var index = (count $words)
    set index = (- $index 1)

    put (env _CLAP_IFS="\n" _CLAP_COMPLETE_INDEX=(to-string $index) FLEETCTX_COMPLETE="elvish" fleetctx -- $@words) | to-lines
}
