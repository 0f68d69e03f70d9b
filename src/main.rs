fn main() {
    println!("polypy: engine not wired yet");
}
