print("gemma-encoder")
