from digitnet.cli import run

run()
