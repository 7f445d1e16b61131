from aimi.cli.main import main

main()
