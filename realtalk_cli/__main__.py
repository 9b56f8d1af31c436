from realtalk_cli.cli import main

main()
