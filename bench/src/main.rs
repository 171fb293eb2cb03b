fn main() {
    println!("gregor-bench");
}
