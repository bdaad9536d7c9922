int main(void) { return 1; /* placeholder: not yet written */ }
