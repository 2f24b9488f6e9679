//! A valid component that is not a Weir plugin: it exports another interface.
//! Weir's tests check that the host refuses it and says what is missing.

wit_bindgen::generate!({
    inline: "
        package other:thing@1.0.0;
        interface greeter { greet: func(name: string) -> string; }
        world foreign { export greeter; }
    ",
    world: "foreign",
});

struct Foreign;

impl exports::other::thing::greeter::Guest for Foreign {
    fn greet(name: String) -> String {
        format!("hello {name}")
    }
}

export!(Foreign);
