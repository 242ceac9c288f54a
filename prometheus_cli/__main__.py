from prometheus_cli.main import run

run()
