#!/usr/bin/env bash
# The node under test of examples/simnet-account-index.toml: a validator start script whose
# `agave-validator` is an agave-perf simnet cluster holding 20,000 token accounts. The flags
# below are real agave-validator flags; simnet checks them against the validator's own flag
# catalog and runs the node as they say (--account-index program-id gives getProgramAccounts
# an index instead of a walk over every account; --rpc-threads bounds the RPC workers).
# The experiment edits these flags exactly as it would edit a real validator's start script.
# $AGAVE_PERF is set by agave-perf to the command that runs itself.
agave-validator() {
  exec ${AGAVE_PERF:-agave-perf} simnet --nodes 2 --port 18964 --slot-ms 100 --accounts 20000 \
    --validator-args "$*"
}

agave-validator \
  --identity /home/sol/validator-keypair.json \
  --ledger /mnt/ledger \
  --rpc-port 8899 \
  --full-rpc-api \
  --rpc-threads 8
