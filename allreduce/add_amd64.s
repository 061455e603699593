#include "textflag.h"

// func addF32AVX2(dst, src *float32, n int)
// dst[i] += src[i] for i < n; n is a multiple of 32.
TEXT ·addF32AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $5, CX
	JZ   done32
loop32:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VADDPS  (DI), Y0, Y0
	VADDPS  32(DI), Y1, Y1
	VADDPS  64(DI), Y2, Y2
	VADDPS  96(DI), Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     loop32
	VZEROUPPER
done32:
	RET

// func addF64AVX2(dst, src *float64, n int)
// dst[i] += src[i] for i < n; n is a multiple of 16.
TEXT ·addF64AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   done16
loop16:
	VMOVUPD (SI), Y0
	VMOVUPD 32(SI), Y1
	VMOVUPD 64(SI), Y2
	VMOVUPD 96(SI), Y3
	VADDPD  (DI), Y0, Y0
	VADDPD  32(DI), Y1, Y1
	VADDPD  64(DI), Y2, Y2
	VADDPD  96(DI), Y3, Y3
	VMOVUPD Y0, (DI)
	VMOVUPD Y1, 32(DI)
	VMOVUPD Y2, 64(DI)
	VMOVUPD Y3, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     loop16
	VZEROUPPER
done16:
	RET

// func addBF16AVX2(dst *float32, src *uint16, n int)
// dst[i] += float32(src[i] << 16) for i < n; n is a multiple of 16.
TEXT ·addBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   doneb
loopb:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VADDPS    (DI), Y0, Y0
	VADDPS    32(DI), Y1, Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       loopb
	VZEROUPPER
doneb:
	RET

DATA bf16consts<>+0(SB)/4, $0x00007fff // rounding bias
DATA bf16consts<>+4(SB)/4, $0x00000001 // lsb mask
DATA bf16consts<>+8(SB)/4, $0x7fffffff // abs mask
DATA bf16consts<>+12(SB)/4, $0x7f800000 // +Inf
DATA bf16consts<>+16(SB)/4, $0x00000040 // quiet bit after the shift
GLOBL bf16consts<>(SB), RODATA|NOPTR, $20

// func encodeBF16AVX2(dst *uint16, src *float32, n int)
// dst[i] = bfloat16(src[i]) rounded to nearest even, NaN kept quiet;
// n is a multiple of 16.
TEXT ·encodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   donee
	VPBROADCASTD bf16consts<>+0(SB), Y8  // 0x7fff
	VPBROADCASTD bf16consts<>+4(SB), Y9  // 1
	VPBROADCASTD bf16consts<>+8(SB), Y10 // 0x7fffffff
	VPBROADCASTD bf16consts<>+12(SB), Y11 // 0x7f800000
	VPBROADCASTD bf16consts<>+16(SB), Y12 // 0x40
loope:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1
	// rounded = (b + 0x7fff + ((b >> 16) & 1)) >> 16
	VPSRLD  $16, Y0, Y2
	VPSRLD  $16, Y1, Y3
	VPAND   Y9, Y2, Y4
	VPAND   Y9, Y3, Y5
	VPADDD  Y8, Y4, Y4
	VPADDD  Y8, Y5, Y5
	VPADDD  Y0, Y4, Y4
	VPADDD  Y1, Y5, Y5
	VPSRLD  $16, Y4, Y4
	VPSRLD  $16, Y5, Y5
	// NaN: (b & 0x7fffffff) > 0x7f800000 -> (b >> 16) | 0x40
	VPAND   Y10, Y0, Y6
	VPAND   Y10, Y1, Y7
	VPCMPGTD Y11, Y6, Y6
	VPCMPGTD Y11, Y7, Y7
	VPOR    Y12, Y2, Y2
	VPOR    Y12, Y3, Y3
	VPBLENDVB Y6, Y2, Y4, Y4
	VPBLENDVB Y7, Y3, Y5, Y5
	// pack the low halves of 16 dwords into 16 words, in order
	VPACKUSDW Y5, Y4, Y4
	VPERMQ  $0xd8, Y4, Y4
	VMOVDQU Y4, (DI)
	ADDQ    $64, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     loope
	VZEROUPPER
donee:
	RET

// func decodeBF16AVX2(dst *float32, src *uint16, n int)
// dst[i] = float32(src[i] << 16); n is a multiple of 16.
TEXT ·decodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   doned
loopd:
	VPMOVZXWD (SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD    $16, Y0, Y0
	VPSLLD    $16, Y1, Y1
	VMOVDQU   Y0, (DI)
	VMOVDQU   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	DECQ      CX
	JNZ       loopd
	VZEROUPPER
doned:
	RET
