/**
 * The memory floor of the listener benchmark: a program that prints one line and then waits,
 * compiled the same way as the listener (bench/compile.ts), so that what the runtime itself
 * costs in a compiled executable is known. It waits until it is sent SIGTERM.
 */
console.log("hello");
setInterval(() => {}, 1 << 30);
