from verifier_bot.cli import main

main()
