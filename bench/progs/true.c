/* The smallest program: what fork+exec+wait runs. */
int main(void) { return 0; }
