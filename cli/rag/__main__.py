from rag.app import main

main()
