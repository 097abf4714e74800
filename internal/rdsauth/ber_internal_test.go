package rdsauth

import (
	"bufio"
	"bytes"
	"testing"
)

func TestBERLengths(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 255, 256, 1000, 65535, 65536, 70000} {
		value := bytes.Repeat([]byte{'x'}, n)
		tag, got, err := readTLV(bufio.NewReader(bytes.NewReader(tlv(tagOctetString, value))))
		if err != nil || tag != tagOctetString || !bytes.Equal(got, value) {
			t.Errorf("%d bytes: tag %#x, %d bytes, %v", n, tag, len(got), err)
		}
	}
	for _, bad := range [][]byte{{0x04, 0x80}, {0x04, 0x85, 1, 1, 1, 1, 1}, {0x04, 0x84, 0x7f, 0xff, 0xff, 0xff}, {0x04, 0x05, 'a'}} {
		if _, _, err := readTLV(bufio.NewReader(bytes.NewReader(bad))); err == nil {
			t.Errorf("% x: no error", bad)
		}
	}
}
