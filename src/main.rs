fn main() { portcullis::placeholder(); }
