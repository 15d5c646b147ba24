from cotbridge.cli import main

main()
