#!/usr/bin/env bash
# The node under test of examples/simnet-latency.toml: an agave-perf simnet cluster standing in
# for agave-validator. The experiment edits the flags of the `agave-validator` line below, exactly
# as it would edit a real validator's start script; the function passes them to simnet.
# $AGAVE_PERF is set by agave-perf to the command that runs itself.
agave-validator() { exec ${AGAVE_PERF:-agave-perf} simnet --nodes 2 --port 18960 --accounts 64 "$@"; }

agave-validator \
  --slot-ms 100 \
  --scenario latency:dist=normal,mean=10ms,sd=0.5ms
