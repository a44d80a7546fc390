module persistmap.example/scenario

go 1.19

require github.com/mattn/go-sqlite3 v1.14.16

// Debian's golang-github-mattn-go-sqlite3-dev, built offline (GOPROXY=off).
replace github.com/mattn/go-sqlite3 => /usr/share/gocode/src/github.com/mattn/go-sqlite3
