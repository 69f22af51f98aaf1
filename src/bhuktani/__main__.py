from bhuktani.cli import main

main()
