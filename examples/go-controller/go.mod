module kvc.dev/examples/go-controller

go 1.19

require kvc.dev/kvc v0.0.0

replace kvc.dev/kvc => ../../bindings/go/kvc
