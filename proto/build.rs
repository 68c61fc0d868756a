fn main() {
    let files = ["proto/riffle.proto", "proto/peer.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"]).expect("protobuf definitions compile");
    tonic_prost_build::configure()
        .bytes(".riffle.peer")
        .bytes(".riffle.v1")
        .compile_fds(descriptors)
        .expect("code generation succeeds");
}
